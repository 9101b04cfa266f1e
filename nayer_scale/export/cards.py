"""The hub cards of an export: the student's model card and the synthetic set's dataset card, built
with ``huggingface_hub``'s :class:`~huggingface_hub.ModelCard` / :class:`~huggingface_hub.DatasetCard`
from their card data and the Jinja templates of ``nayer_scale/export/templates/``.

Model card metadata (:func:`model_card`): ``base_model`` (the teacher's hub id, where it has one:
:func:`teacher_hub_id`), ``datasets`` (the synthetic set's hub repository when it is pushed), ``license``,
``library_name`` (``timm`` for a student written in timm's format, else ``nayer-scale``), ``tags``
(knowledge-distillation, data-free, nayer, image-classification, the method), ``pipeline_tag:
image-classification`` and a ``model-index`` with the student's top-1 on the evaluation set
(:func:`evaluation_set`) as an :class:`~huggingface_hub.EvalResult` (``metric_type: accuracy``,
value a fraction in [0, 1] as in ``summary.json``).

Dataset card metadata (:func:`dataset_card`): ``license``, ``task_categories: image-classification``,
``size_categories``, ``tags`` (synthetic, knowledge-distillation, data-free, nayer, the method),
``pretty_name``, ``dataset_info`` (features, split sizes: what ``datasets`` itself writes) and
``nayer_scale`` (teacher, teacher hub id, method, images, processes).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from .run_folder import RunFolder

__all__ = [
    "CARD_TAGS",
    "EVAL_SETS",
    "TEMPLATES",
    "dataset_card",
    "evaluation_set",
    "model_card",
    "numbers_table",
    "size_category",
    "teacher_hub_id",
    "teacher_line",
]

TEMPLATES = Path(__file__).parent / "templates"
#: tags of every card (plus the method's name)
CARD_TAGS = ("knowledge-distillation", "data-free", "nayer", "image-classification")
#: eval.dataset -> (hub dataset id, split) of the built-in evaluation sets
EVAL_SETS = {
    "fashion_mnist": ("zalando-datasets/fashion_mnist", "test"),
    "cifar10": ("uoft-cs/cifar10", "test"),
    "cifar100": ("uoft-cs/cifar100", "test"),
    "imagenet": ("ILSVRC/imagenet-1k", "validation"),
}
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)


def _is_hub_id(text: str) -> bool:
    """``org/name`` (or a bare name) that is not a local path, as ``nayer_scale.models.hf`` tells them apart."""
    return (
        bool(text)
        and not Path(text).expanduser().exists()
        and not text.startswith(("/", ".", "~"))
        and text.count("/") <= 1
    )


def teacher_hub_id(teacher: dict) -> str | None:
    """The hub model id the teacher's weights come from, or None.

    * ``teacher.arch=hf:<org>/<name>`` (not a local folder): ``<org>/<name>``;
    * ``teacher.weights=hf-hub:<org>/<repo>[/<file>]`` (zoo, factory or timm teachers): ``<org>/<repo>``;
    * ``teacher.arch=timm:<arch>.<tag>`` with weights given (a file): ``timm/<arch>.<tag>``, the repository
      timm publishes each pretrained tag under; without a tag (the default tag is timm's to choose) or
      without weights (a random teacher): None;
    * ``torchvision:`` weights, the zoo with a local file, the shipped demo teacher: None.
    """
    arch, weights = str(teacher.get("arch", "")), str(teacher.get("weights") or "")
    if arch.startswith("hf:"):
        return arch[3:] if _is_hub_id(arch[3:]) else None
    if weights.startswith("hf-hub:"):
        parts = weights[len("hf-hub:") :].strip("/").split("/")
        return "/".join(parts[:2]) if len(parts) >= 2 else None
    if arch.startswith("timm:") and weights and "." in arch[5:]:
        return f"timm/{arch[5:]}"
    return None


def evaluation_set(config: dict) -> tuple[str, str, str | None] | None:
    """(dataset id, readable name, split) of the run's evaluation set, None for ``eval.dataset=none``.
    Built-in sets are named by their hub ids (:data:`EVAL_SETS`); ``eval.dataset=hf`` by ``eval.hf_path``
    (a local folder by its name)."""
    e = config.get("eval", {})
    dataset = e.get("dataset", "none")
    if dataset in EVAL_SETS:
        hub_id, split = EVAL_SETS[dataset]
        return hub_id, dataset, split
    if dataset == "hf" and e.get("hf_path"):
        path = str(e["hf_path"])
        name = path if _is_hub_id(path) else Path(path).name
        return name, name, e.get("hf_split") or None
    return None


def size_category(rows: int) -> str:
    """The hub's ``size_categories`` value for ``rows`` rows (``n<1K``, ``1K<n<10K``, ...)."""
    return next((name for bound, name in _SIZES if rows < bound), "n>1T")


def _pct(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "not measured"


def _hours(summary: dict) -> str:
    hours = summary.get("device_hours")
    return f"{hours:.4f} {summary.get('device_hours_unit', '')}" if isinstance(hours, (int, float)) else "-"


def numbers_table(summary: dict | None) -> str:
    """The run's numbers as a markdown table (method, top-1s, agreement, device-hours, processes, device)."""
    if summary is None:
        return "The run has not finished (no summary.json): no final numbers.\n"
    return (
        "| method | teacher top-1 | student top-1 | held-out agreement | device-hours | processes | device |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
        f"| {summary.get('method')} | {_pct(summary.get('teacher_top1'))} | {_pct(summary.get('student_top1'))} | "
        f"{_pct(summary.get('student_agreement'))} | {_hours(summary)} | "
        f"{summary.get('num_processes')} | {summary.get('device_kind')} |\n\n"
        f"Top-1 is on {summary.get('eval_images', 0)} real evaluation images (`eval.*` of the config); the "
        "held-out agreement is the student's top-1 agreement with the teacher on synthetic images it never "
        "trained on.\n"
    )


def teacher_line(teacher: dict) -> str:
    """The teacher in one line: ``teacher.arch``, its weights and its input shape."""
    weights = f", weights `{teacher['weights']}`" if teacher.get("weights") else ""
    return (
        f"`{teacher['arch']}`{weights} ({teacher['in_channels']} x {teacher['image_size']} x "
        f"{teacher['image_size']} input)"
    )


def _tags(method: str, *extra: str) -> list[str]:
    return list(dict.fromkeys([*CARD_TAGS, method, *extra]))


def _eval_result(run: RunFolder, model_name: str) -> list[EvalResult] | None:
    top1 = (run.summary or {}).get("student_top1")
    where = evaluation_set(run.config)
    if not isinstance(top1, (int, float)) or where is None:
        return None
    dataset_id, name, split = where
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset_id,
            dataset_name=name,
            dataset_split=split,
            metric_type="accuracy",
            metric_name="top-1",
            metric_value=float(top1),
        )
    ]


def _model_card_data(
    run: RunFolder,
    library_name: str,
    model_name: str,
    license: str,
    dataset_repo: str | None,
    extra_tags: tuple[str, ...],
) -> ModelCardData:
    """The model card's metadata (the YAML header the hub reads)."""
    base_model = teacher_hub_id(run.teacher)
    return ModelCardData(
        base_model=base_model,
        datasets=[dataset_repo] if dataset_repo else None,
        license=license,
        library_name=library_name,
        model_name=model_name,
        pipeline_tag="image-classification",
        tags=_tags(run.method, *extra_tags),
        eval_results=_eval_result(run, model_name),
    )


def model_card(
    run: RunFolder,
    *,
    arch: str,
    class_names: list[str],
    in_channels: int,
    image_size: int,
    mean: list[float],
    std: list[float],
    command: str,
    usage: str,
    library_name: str,
    model_name: str,
    license: str = "other",
    dataset_repo: str | None = None,
    extra_tags: tuple[str, ...] = (),
) -> ModelCard:
    """The student's model card (metadata: see the module docstring; text: what it is, how it was made,
    how to use it, the run's numbers and the command).

    Args:
        arch: the student's zoo architecture; class_names: its K classes; in_channels, image_size, mean,
            std: its input (mean / std of [0, 1] pixels).
        command: the command that made the run; usage: the markdown of the "Use" section.
        library_name: ``timm`` or ``nayer-scale``; model_name: the name in the ``model-index``.
        license: the hub license id (the teacher's license governs a student distilled from it).
        dataset_repo: the hub dataset repository of the synthetic set, if published (-> ``datasets``).
    """
    summary = run.summary or {}
    data = _model_card_data(run, library_name, model_name, license, dataset_repo, extra_tags)
    where = evaluation_set(run.config)
    return ModelCard.from_template(
        data,
        template_path=str(TEMPLATES / "model_card.md"),
        title=f"{arch} distilled without data from {run.teacher['arch']}",
        arch=arch,
        num_classes=len(class_names),
        in_channels=in_channels,
        image_size=image_size,
        mean=list(mean),
        std=list(std),
        method=run.method,
        teacher_line=teacher_line(run.teacher),
        student_top1=_pct(summary.get("student_top1")),
        teacher_top1=_pct(summary.get("teacher_top1")),
        eval_images=summary.get("eval_images", 0),
        eval_set=f" (`{where[0]}`{f', split {where[2]}' if where[2] else ''})" if where else "",
        device_hours=_hours(summary),
        num_processes=summary.get("num_processes", "?"),
        device_kind=summary.get("device_kind", "?"),
        command=command,
        dataset_repo=dataset_repo,
        usage=usage,
        numbers=numbers_table(run.summary),
    )


def dataset_card(
    run: RunFolder,
    *,
    rows: int,
    class_names: list[str],
    processes: int,
    image_size: int,
    info=None,
    license: str = "other",
) -> DatasetCard:
    """The synthetic set's dataset card: it says the images are synthetic, from which teacher and by which
    method, how many, their features, the run's numbers and ``run.yaml``.

    Args:
        rows: images; class_names: the ``label`` classes; processes: processes that wrote them;
        image_size: the images' side in pixels.
        info: the written ``datasets.DatasetInfo`` (its features and split sizes become ``dataset_info``).
        license: the hub license id (the teacher's license governs images synthesised from it).
    """
    base_model = teacher_hub_id(run.teacher)
    weights = str(run.teacher.get("weights") or "")
    if weights and Path(weights).expanduser().is_absolute():
        weights = Path(weights).name  # a local file: its name, not this machine's path
    nayer = {
        "teacher": run.teacher["arch"],
        "teacher_weights": weights or None,
        "teacher_hub_id": base_model,
        "method": run.method,
        "images": rows,
        "processes": processes,
    }
    data = DatasetCardData(
        license=license,
        task_categories=["image-classification"],
        size_categories=[size_category(rows)],
        pretty_name=f"Synthetic images ({run.method}) of {run.teacher['arch']}",
        tags=list(dict.fromkeys(["synthetic", *CARD_TAGS[:3], run.method])),
        nayer_scale={k: v for k, v in nayer.items() if v is not None},
    )
    if info is not None:
        from datasets.info import DatasetInfosDict

        DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    shown = ", ".join(class_names[:20]) + (" ..." if len(class_names) > 20 else "")
    return DatasetCard.from_template(
        data,
        template_path=str(TEMPLATES / "dataset_card.md"),
        title=f"Synthetic images of a data-free distillation run ({run.method})",
        rows=rows,
        teacher_line=teacher_line(run.teacher),
        processes=processes,
        method=run.method,
        base_model=base_model,
        mode="grey" if int(run.teacher["in_channels"]) == 1 else "RGB",
        image_size=image_size,
        num_classes=len(class_names),
        class_list=shown,
        numbers=numbers_table(run.summary),
        run_yaml=run.run_yaml if run.run_yaml.endswith("\n") or not run.run_yaml else run.run_yaml + "\n",
    )
