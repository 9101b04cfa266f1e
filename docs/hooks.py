"""mkdocs hook: the configuration reference page is generated at build time from the config
dataclasses (``nayer_scale.config.reference``), the same metadata ``nayer-scale distill --help``
prints, so the two cannot drift apart."""

from __future__ import annotations

from mkdocs.structure.files import File


def on_files(files, config):
    from nayer_scale.cli import presets_text
    from nayer_scale.config.reference import reference_markdown
    from nayer_scale.recipes import PRESETS

    page = "\n".join(
        [
            "# Configuration reference",
            "",
            "Every field of a run's config, by section, with its type, its default (the CPU demo recipe, "
            "`preset=fashion_mnist`), its choices or range and its meaning. Set any of them as `section.key=value` "
            "on the command line, in a YAML file (`config=run.yaml`), or in Python (`cfg.section.key = value`). "
            "This page and `nayer-scale distill --help` are generated from the same dataclasses.",
            "",
            f"## Presets ({len(PRESETS)})",
            "",
            "```text",
            presets_text(),
            "```",
            "",
            reference_markdown(),
        ]
    )
    files.append(File.generated(config, "reference/config.md", content=page))
    return files
