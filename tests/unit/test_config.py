"""Config parsing, validation and the errors raised before any work starts; presets (pinned by a
snapshot), the YAML layer, the deprecated v1 names and the resume comparison."""

import dataclasses
import json
import typing
import warnings
from pathlib import Path

import pytest

from nayer_scale.cli import build_config
from nayer_scale.config import (
    CHANNELS_LAST,
    DEMO_TEACHER,
    EVAL_DATASETS,
    GENERATOR_INPUTS,
    MIXED_PRECISIONS,
    RENAMED_FIELDS,
    SYNTHESIS_METHODS,
    ConfigError,
    NayerConfig,
    QuantizationConfig,
    SynthesisConfig,
    apply_overrides,
    check_resume_compatible,
    config_from_dict,
)
from nayer_scale.config.loader import REPLACED_FIELDS
from nayer_scale.recipes import PRESETS, get_preset, preset

SNAPSHOT = Path(__file__).parents[1] / "data" / "preset_snapshot.json"
# config v1 used generator_lr / generator_betas for DeepInversion's pixel optimiser
DI_PIXEL_FIELDS = {
    "synthesis.generator_lr": "synthesis.deepinversion.pixel_lr",
    "synthesis.generator_betas": "synthesis.deepinversion.pixel_betas",
}


def _snapshot(name: str) -> dict:
    """The v1 config of preset ``name``; the shipped teacher's path is stored as "<DEMO_TEACHER>"
    (it depends on where the checkout is)."""
    text = SNAPSHOT.read_text().replace('"<DEMO_TEACHER>"', json.dumps(DEMO_TEACHER))
    return json.loads(text)[name]


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        out.update(_flat(value, path) if isinstance(value, dict) else {path: value})
    return out


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate_and_round_trip(name):
    cfg = get_preset(name).validate()
    assert config_from_dict(cfg.to_dict()) == cfg


V1_PRESETS = [
    name for name in PRESETS if name in json.loads(SNAPSHOT.read_text())
]  # presets added since v1 are not in it


def test_the_snapshot_covers_every_v1_preset():
    assert set(PRESETS) - set(V1_PRESETS) == {"fashion_mnist_w4a4", "fashion_mnist_w4a4_zeroq"}


@pytest.mark.parametrize("name", V1_PRESETS)
def test_preset_values_match_the_v1_snapshot(name):
    """Every value of tests/data/preset_snapshot.json (written by config v1, flat synthesis section)
    is found at its v2 place; fields new in v2 hold their dataclass defaults."""
    old = _flat(_snapshot(name))
    new = _flat(json.loads(json.dumps(get_preset(name).to_dict())))  # tuples as JSON lists, like the snapshot
    defaults = _flat(json.loads(json.dumps(NayerConfig().to_dict())))
    moved = {**RENAMED_FIELDS, **(DI_PIXEL_FIELDS if name.endswith("_deepinversion") else {})}
    mapped = {moved.get(key, key): value for key, value in old.items() if key not in REPLACED_FIELDS}
    mapped.update(
        {
            REPLACED_FIELDS[key][0]: REPLACED_FIELDS[key][1](value)
            for key, value in old.items()
            if key in REPLACED_FIELDS
        }
    )  # run.tensorboard=false -> run.log_with=none
    assert {k: new[k] for k in mapped} == mapped
    # fields new in v2 that a preset sets on purpose (documented in the preset's docstring)
    chosen = {"memory.max_images"} if name.startswith("imagenet_r50") else set()
    assert {k: new[k] for k in new if k not in set(mapped) | chosen} == {
        k: defaults[k] for k in new if k not in set(mapped) | chosen
    }


@pytest.mark.parametrize("name", V1_PRESETS)
def test_v1_dicts_load_as_the_v2_presets(name):
    """A config stored by v1 (a checkpoint's to_dict()) loads, with DeprecationWarnings, as the v2
    preset: moved keys go to their sub-config, a v1 DeepInversion generator_lr to pixel_lr."""
    v1 = _snapshot(name)
    expected = get_preset(name)
    if name.startswith("imagenet_r50"):  # v1 runs had no bound on the memory (and resume keeps it so)
        expected.memory.max_images = 0
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        assert config_from_dict(v1) == expected


def test_choice_constants_come_from_the_literals():
    hints = typing.get_type_hints(SynthesisConfig)
    assert SYNTHESIS_METHODS == typing.get_args(hints["method"]) == ("nayer", "deepinversion", "fast")
    assert MIXED_PRECISIONS == ("auto", "no", "bf16", "fp16") and CHANNELS_LAST == ("auto", "true", "false")
    assert "imagenet" in EVAL_DATASETS and "lte_plus_noise" in GENERATOR_INPUTS


def _leaf_fields(cls, prefix):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            yield from _leaf_fields(f.default_factory, f"{prefix}.{f.name}")
        else:
            yield f"{prefix}.{f.name}", f, hints[f.name]


def test_every_numeric_field_declares_its_range():
    explicit = {"synthesis.resized_crop_scale", "distill.resized_crop_scale"}  # checked as (min, max) pairs
    missing = []
    for section in dataclasses.fields(NayerConfig):
        for key, f, annotation in _leaf_fields(section.default_factory, section.name):
            item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is tuple else annotation
            if item in (int, float) and key not in explicit and "range" not in f.metadata:
                missing.append(key)
    assert missing == []


def test_overrides_are_typed():
    cfg = apply_overrides(
        get_preset("fashion_mnist"),
        [
            "synthesis.bn_loss_weight=5",
            "synthesis.generator_betas=0.4,0.99",
            "run.channels_last=true",
            "teacher.arch=pkg.mod:factory",
            "run.epochs=7",
            "synthesis.nayer.generator_input=noise",
            "synthesis.deepinversion.pixel_betas=0.9,0.9",
            "synthesis.fast.meta_learning=reptile",
        ],
    )
    assert cfg.synthesis.bn_loss_weight == 5.0
    assert cfg.synthesis.generator_betas == (0.4, 0.99)
    assert cfg.run.channels_last == "true" and cfg.run.epochs == 7
    assert cfg.teacher.arch == "pkg.mod:factory"
    assert cfg.synthesis.nayer.generator_input == "noise" and cfg.synthesis.deepinversion.pixel_betas == (0.9, 0.9)
    assert cfg.synthesis.fast.meta_learning == "reptile"
    cfg.validate()


@pytest.mark.parametrize(
    "item,message",
    [
        ("epochs=3", "section.key=value"),
        ("nosuch.epochs=3", "unknown config section"),
        ("run.epoch=3", "unknown key 'run.epoch'; run has: .*epochs"),
        ("synthesis.nayer.input=lte", "unknown key 'synthesis.nayer.input'; synthesis.nayer has: .*generator_input"),
        (
            "synthesis.nayer=lte",
            "synthesis.nayer is a section, not a value; set its keys: synthesis.nayer.generator_input",
        ),
        ("run.epochs.x=3", "run.epochs is a value, not a section"),
        ("run.epochs=three", "takes a int"),
        ("run.resume=maybe", "true/false"),
    ],
)
def test_bad_overrides(item, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("fashion_mnist"), [item])


@pytest.mark.parametrize(
    "item,message",
    [
        ("run.warmup_epochs=30", "warmup_epochs"),
        ("synthesis.bn_momentum=1.0", r"synthesis.bn_momentum must be in \[0, 1\), got 1.0"),
        ("teacher.mean=0.1,0.2,0.3", "one value per input channel"),
        ("run.mixed_precision=fp8", "run.mixed_precision must be one of auto, no, bf16, fp16, got 'fp8'"),
        ("synthesis.batch_size=0", "synthesis.batch_size must be > 0, got 0"),
        ("synthesis.method=x", "synthesis.method must be one of nayer, deepinversion, fast, got 'x'"),
        (
            "synthesis.bn_loss_weight=-5",
            "synthesis.bn_loss_weight must be >= 0, got -5.0: set synthesis.bn_loss_weight",
        ),
        ("synthesis.ce_loss_weight=-1", "synthesis.ce_loss_weight must be >= 0"),
        ("synthesis.adv_loss_weight=-1", "synthesis.adv_loss_weight must be >= 0"),
        ("synthesis.deepinversion.tv_loss_weight=-1", "synthesis.deepinversion.tv_loss_weight must be >= 0"),
        ("synthesis.deepinversion.l2_loss_weight=-1", "synthesis.deepinversion.l2_loss_weight must be >= 0"),
        ("synthesis.deepinversion.pixel_lr=0", "synthesis.deepinversion.pixel_lr must be > 0"),
        ("synthesis.fast.latent_lr=0", "synthesis.fast.latent_lr must be > 0"),
        ("synthesis.nayer.noise_beta=-1", "synthesis.nayer.noise_beta must be >= 0"),
        ("synthesis.nayer.noisy_layer=2-to-1", "synthesis.nayer.noisy_layer must be one of k_to_1, one_to_one, none"),
        ("synthesis.generator_lr=0", "synthesis.generator_lr must be > 0"),
        ("synthesis.generator_betas=0.5,1.0", r"every value of synthesis.generator_betas must be in \[0, 1\)"),
        ("synthesis.generator_betas=0.5", "synthesis.generator_betas takes 2 values"),
        ("distill.momentum=1", r"distill.momentum must be in \[0, 1\)"),
        ("distill.weight_decay=-1e-4", "distill.weight_decay must be >= 0"),
        ("distill.lr=0", "distill.lr must be > 0"),
        ("distill.lr_min=0.5", r"distill.lr_min \(0.5\) must be in \[0, distill.lr=0.1\]"),
        ("distill.temperature=0", "distill.temperature must be > 0"),
        ("distill.resized_crop_scale=0.5,0.1", "distill.resized_crop_scale takes two area fractions"),
        ("teacher.std=0.0", "every value of teacher.std must be > 0"),
        ("teacher.image_size=4", "teacher.image_size must be >= 8"),
        ("run.keep_checkpoints=0", "run.keep_checkpoints must be >= 1"),
        ("memory.cache_gb=-1", "memory.cache_gb must be >= 0"),
        ("eval.dataset=imagenet", "eval.dataset=imagenet needs eval.root"),
    ],
)
def test_validation_names_the_field(item, message):
    cfg = apply_overrides(get_preset("fashion_mnist"), [item])
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_cross_field_and_type_checks():
    cfg = get_preset("fashion_mnist_fast")
    cfg.synthesis.nayer.shared_generator = True
    with pytest.raises(ConfigError, match="synthesis.nayer.shared_generator applies to synthesis.method=nayer"):
        cfg.validate()
    cfg = get_preset("fashion_mnist")
    cfg.run.epochs = "3"
    with pytest.raises(ConfigError, match="run.epochs takes a int, got '3'"):
        cfg.validate()
    cfg = get_preset("fashion_mnist")
    cfg.run.channels_last = True  # configs written before "auto" existed
    assert cfg.validate().run.channels_last == "true"


def test_deprecated_flat_names_still_work_and_warn():
    with pytest.warns(DeprecationWarning, match="synthesis.generator_input is deprecated.*nayer.generator_input"):
        cfg = apply_overrides(get_preset("fashion_mnist"), ["synthesis.generator_input=noise"])
    assert cfg.synthesis.nayer.generator_input == "noise"
    for old, value, new in [
        ("synthesis.tv_loss_weight", "0.5", "deepinversion.tv_loss_weight"),
        ("synthesis.latent_lr", "0.2", "fast.latent_lr"),
        ("synthesis.shared_generator", "true", "nayer.shared_generator"),
    ]:
        with pytest.warns(DeprecationWarning, match=f"use synthesis.{new}"):
            apply_overrides(cfg, [f"{old}={value}"])
    assert cfg.synthesis.deepinversion.tv_loss_weight == 0.5 and cfg.synthesis.fast.latent_lr == 0.2
    # a v1 dict (e.g. the config stored in an old checkpoint) loads into the v2 layout
    v1 = json.loads(SNAPSHOT.read_text())["cifar10_fast"]
    with pytest.warns(DeprecationWarning) as record:
        assert config_from_dict(v1).validate() == get_preset("cifar10_fast")
    assert "synthesis.meta_learning is deprecated and will be removed: use synthesis.fast.meta_learning" in {
        str(w.message) for w in record
    }
    # the memory-cache keys that were under run, the quantization string of the student
    with pytest.warns(DeprecationWarning, match="run.memory_cache is deprecated.*use memory.cache"):
        assert apply_overrides(get_preset("fashion_mnist"), ["run.memory_cache=node"]).memory.cache == "node"
    with pytest.warns(DeprecationWarning, match="run.memory_cache_gb is deprecated.*use memory.cache_gb"):
        assert apply_overrides(get_preset("fashion_mnist"), ["run.memory_cache_gb=3"]).memory.cache_gb == 3.0
    with pytest.warns(DeprecationWarning, match="student.quantization=w4a8 is deprecated.*weight_bits"):
        q = apply_overrides(get_preset("fashion_mnist"), ["student.quantization=w4a8"]).student.quantization
    assert (q.weight_bits, q.activation_bits, q.name) == (4, 8, "w4a8")
    saved = get_preset("fashion_mnist").to_dict()  # a checkpoint's config of the release before
    saved["run"]["memory_cache"], saved["run"]["memory_cache_gb"] = saved["memory"].pop("cache"), 0.0
    del saved["memory"]["cache_gb"]
    saved["student"] = {
        "arch": "resnet8",
        "quantization": "none",
        "quantization_keep_ends_8bit": True,
        "quantization_fold_bn": False,
    }
    with pytest.warns(DeprecationWarning, match="student.quantization_fold_bn is deprecated"):
        old = config_from_dict(saved)
    assert old.student.quantization == QuantizationConfig(fold_bn=False) and old.memory.cache == "auto"
    # attribute access of a moved field reads and writes the new place
    cfg = get_preset("fashion_mnist")
    with pytest.warns(DeprecationWarning, match="synthesis.nayer.noisy_layer"):
        cfg.synthesis.noisy_layer = "none"
    assert cfg.synthesis.nayer.noisy_layer == "none"


def test_the_defaults_are_the_demo_recipe():
    assert NayerConfig() == get_preset("fashion_mnist") and NayerConfig().teacher.weights == DEMO_TEACHER


def test_preset_decorator_registers_and_derives():
    assert PRESETS["cifar100"]().teacher.arch == "wrn40_2" and get_preset("cifar100").run.run_dir == "runs/cifar100"
    assert get_preset("cifar100_fast").run.run_dir == "runs/cifar100_fast"
    with pytest.raises(ValueError, match="registered twice"):
        preset("cifar10")(lambda: NayerConfig())
    with pytest.raises(ValueError, match="register its parent"):
        preset("new_one", parent="no_such")(lambda cfg: cfg)
    with pytest.raises(ConfigError, match="unknown preset 'x'; presets: fashion_mnist"):
        get_preset("x")


@pytest.mark.parametrize("name", list(PRESETS))
def test_yaml_round_trip(tmp_path, name):
    original = get_preset(name)
    path = tmp_path / "run.yaml"
    path.write_text(original.to_yaml())
    other = "imagenet_r50" if name.startswith("fashion") else "fashion_mnist"
    loaded = build_config(other, [f"config={path}"])
    assert loaded.to_dict() == original.to_dict()
    assert isinstance(loaded.teacher.mean, tuple) and isinstance(loaded.synthesis.deepinversion.pixel_betas, tuple)


def test_yaml_layers_preset_then_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "preset: cifar10\nsynthesis:\n  generator_lr: 4e-3\n  bn_loss_weight: 5\n  nayer:\n"
        "    generator_input: noise\nrun:\n  epochs: 30\n  channels_last: true\n  seed: 3\neval:\n"
    )
    cfg = build_config("fashion_mnist", [f"config={path}", "run.seed=4"])
    assert cfg.teacher.arch == "wrn40_2"  # the file's preset
    assert cfg.synthesis.bn_loss_weight == 5.0 and isinstance(cfg.synthesis.bn_loss_weight, float)
    assert cfg.synthesis.generator_lr == 0.004 and cfg.synthesis.nayer.generator_input == "noise"
    assert (cfg.run.epochs, cfg.run.channels_last, cfg.run.seed) == (30, "true", 4)  # override on top
    assert build_config("fashion_mnist", [f"config={path}", "preset=tiny_imagenet"]).teacher.arch == "resnet34"


@pytest.mark.parametrize(
    "text,message",
    [
        ("run:\n  epoch: 3\n", "config file .*run.yaml: unknown key 'run.epoch'; run has: .*epochs"),
        ("runs:\n  epochs: 3\n", "unknown config section 'runs' in 'runs.epochs'; sections: teacher, student"),
        ("synthesis:\n  nayer:\n    input: lte\n", "unknown key 'synthesis.nayer.input'; synthesis.nayer has"),
        ("run:\n  epochs: [1, 2]\n", r"run.epochs takes a int, got \[1, 2\]"),
        ("synthesis:\n  generator_betas: 0.5\n", "synthesis.generator_betas takes a list of floats"),
        ("- 1\n- 2\n", "must hold a mapping of sections"),
        ("run: {epochs: 3\n", "is not valid YAML"),
        ("synthesis:\n  bn_loss_weight: -5\n", "synthesis.bn_loss_weight must be >= 0, got -5.0"),
    ],
)
def test_bad_yaml_is_refused(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config("fashion_mnist", [f"config={path}"])


def test_yaml_errors_for_files():
    with pytest.raises(FileNotFoundError, match="config file .*nope.yaml does not exist"):
        build_config("fashion_mnist", ["config=/nonexistent/nope.yaml"])
    with pytest.raises(ConfigError, match="give one config="):
        build_config("fashion_mnist", ["config=a.yaml", "config=b.yaml"])


def test_resume_allows_listed_changes_and_names_the_others():
    saved = get_preset("fashion_mnist").to_dict()
    assert check_resume_compatible(saved, get_preset("fashion_mnist").to_dict()) == []
    now = apply_overrides(
        get_preset("fashion_mnist"),
        ["eval.every_epochs=5", "run.epochs=20", "run.progress=false", "run.run_dir=/elsewhere"],
    ).to_dict()
    assert check_resume_compatible(saved, now) == [
        "eval.every_epochs: 2 -> 5",
        "run.run_dir: 'runs/fashion_mnist' -> '/elsewhere'",
        "run.epochs: 10 -> 20",
        "run.progress: True -> False",
    ]
    now = apply_overrides(
        get_preset("fashion_mnist"),
        ["run.seed=1", "run.epochs=5", "synthesis.nayer.generator_input=noise", "eval.batch_size=10"],
    ).to_dict()
    with pytest.raises(ConfigError) as err:
        check_resume_compatible(saved, now)
    message = str(err.value)
    assert "run.seed changed from 0 to 1 since the checkpoint" in message
    assert "run.epochs changed from 10 to 5 since the checkpoint (it may only grow)" in message
    assert "synthesis.nayer.generator_input changed from 'lte' to 'noise'" in message
    assert "eval.batch_size" not in message and "start a new run in another run.run_dir" in message


def test_resume_maps_a_v1_checkpoint_config():
    v1 = json.loads(SNAPSHOT.read_text())["cifar10_deepinversion"]  # lists for tuples, flat synthesis section
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the mapping of the old layout is silent here
        assert check_resume_compatible(v1, get_preset("cifar10_deepinversion").to_dict()) == []
