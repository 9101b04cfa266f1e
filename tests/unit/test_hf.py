"""The Hugging Face ecosystem (issue 15): evaluation sets through ``datasets`` (``eval.dataset=hf``) and
teachers from ``transformers`` (``teacher.arch=hf:...``); the export of run artifacts as hub folders
(``python -m nayer_scale.export``) is tested in ``tests/unit/test_export.py``. Everything is built locally:
nothing is read from the hub.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_hf_runs.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

datasets = pytest.importorskip("datasets")  # declared in the "hf" extra (part of "dev")

from helpers.hf import _fm_dataset, _save_tiny_resnet, fm_saved, fm_split, hf_teacher_dir  # noqa: E402  # noqa: E402, F401 (fixtures, found by name)
from nayer_scale.config import ConfigError, EvalConfig  # noqa: E402
from nayer_scale.data import FASHION_MNIST_CLASSES, build_eval_source, check_eval_data  # noqa: E402
from nayer_scale.data.eval_source import tensor_eval_source  # noqa: E402
from nayer_scale.data.hf import check_hf_eval, open_hf_dataset  # noqa: E402

N_IMAGES = 200


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path_factory, monkeypatch):
    """Arrow caches of the parquet / imagefolder builders go to a temporary folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf_cache"))


def _eval_cfg(path, **changes) -> EvalConfig:
    return EvalConfig(dataset="hf", hf_path=str(path), batch_size=64, num_workers=0, **changes).validate()


def _collect(source):
    batches = list(source())
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


# ---------------------------------------------------------------------------------------------
# 1. Evaluation sets through `datasets`


def test_saved_dataset_gives_the_same_images_as_the_builtin_source(fm_split, fm_saved):
    images, labels = fm_split
    e = _eval_cfg(fm_saved)
    check_eval_data(e, 10, in_channels=1, class_names=list(FASHION_MNIST_CLASSES))
    got_images, got_labels = _collect(build_eval_source(e, 1, 28, 10, class_names=list(FASHION_MNIST_CLASSES)))
    assert got_images.dtype == torch.uint8 and got_images.shape == (N_IMAGES, 1, 28, 28)
    assert torch.equal(got_images, images) and torch.equal(got_labels, labels)  # 28 px images pass unchanged


def test_shipped_teacher_top1_equals_on_hf_and_builtin_sources(fm_split, fm_saved):
    from nayer_scale.augment import BatchAugment
    from nayer_scale.config import DEMO_TEACHER
    from nayer_scale.evaluation import Evaluator
    from nayer_scale.models.sources import build_teacher
    from nayer_scale.precision import resolve_precision

    teacher = build_teacher("resnet20", DEMO_TEACHER, 10, 1)
    normalize = BatchAugment((0.2860,), (0.3530,), 0, False).normalize
    precision = resolve_precision("no", "false", torch.device("cpu"))
    hf = Evaluator(build_eval_source(_eval_cfg(fm_saved), 1, 28, 10), normalize, precision, torch.device("cpu"))(
        teacher
    )
    ref = Evaluator(tensor_eval_source(*fm_split, 64), normalize, precision, torch.device("cpu"))(teacher)
    assert hf == ref and hf.images == N_IMAGES


def test_processes_split_the_set_and_counts_add_up(fm_split, fm_saved):
    e = _eval_cfg(fm_saved)
    parts = [_collect(build_eval_source(e, 1, 28, 10, rank=r, world_size=3)) for r in range(3)]
    assert sum(len(p[1]) for p in parts) == N_IMAGES
    assert torch.equal(torch.cat([p[1] for p in parts]), fm_split[1])  # contiguous parts: each image once


def test_parquet_file_glob_and_streaming(fm_split, tmp_path):
    ds = _fm_dataset(*fm_split)
    ds.select(range(100)).to_parquet(str(tmp_path / "val-0.parquet"))
    ds.select(range(100, N_IMAGES)).to_parquet(str(tmp_path / "val-1.parquet"))
    for path, streaming in (
        (tmp_path / "val-0.parquet", False),
        (str(tmp_path / "val-*.parquet"), False),
        (str(tmp_path / "val-*.parquet"), True),
    ):
        e = _eval_cfg(path, hf_split="validation", hf_streaming=streaming)
        info = check_hf_eval(e, 10, 1, list(FASHION_MNIST_CLASSES))
        assert info.split == "validation" and (info.num_rows is None) == streaming
        n = 100 if str(path).endswith("0.parquet") else N_IMAGES
        images, labels = _collect(build_eval_source(e, 1, 28, 10))
        assert torch.equal(labels, fm_split[1][:n]) and torch.equal(images, fm_split[0][:n])
    # streamed, two processes: each image once
    e = _eval_cfg(str(tmp_path / "val-*.parquet"), hf_streaming=True)
    counts = [len(_collect(build_eval_source(e, 1, 28, 10, rank=r, world_size=2))[1]) for r in range(2)]
    assert sum(counts) == N_IMAGES and min(counts) > 0


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory) -> Path:
    """An imagefolder ``test/<class>/<n>.png`` of 20x24 RGB images, 3 classes, 2 images each."""
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(1)
    for name in ("cat", "dog", "ship"):
        (root / "test" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(root / "test" / name / f"{i}.png")
    return root


def test_imagefolder_is_resized_and_centre_cropped(rgb_folder):
    from nayer_scale.data import imagenet_eval_transform

    e = _eval_cfg(rgb_folder, resize=18)
    images, labels = _collect(build_eval_source(e, 3, 16, 3, class_names=["Cat", "dog", "ship"]))
    assert images.shape == (6, 3, 16, 16) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    with Image.open(rgb_folder / "test" / "dog" / "1.png") as im:
        assert torch.equal(images[3], imagenet_eval_transform(im, 18, 16))


def test_grey_teacher_reads_grey_and_colour_teacher_rgb(fm_saved):
    images, _ = _collect(build_eval_source(_eval_cfg(fm_saved, resize=32), 1, 24, 10))
    assert images.shape == (N_IMAGES, 1, 24, 24)


# -- errors before any work: each names the fix


def test_missing_path_and_config_without_path(tmp_path):
    with pytest.raises(ConfigError, match="eval.dataset=hf needs eval.hf_path"):
        EvalConfig(dataset="hf").validate()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_hf_eval(_eval_cfg(tmp_path / "nothing" / "here"), 10)
    with pytest.raises(FileNotFoundError, match="glob matches nothing"):
        check_hf_eval(_eval_cfg(str(tmp_path / "*.parquet")), 10)


def test_missing_split_names_the_splits(rgb_folder):
    with pytest.raises(ValueError, match=r"no split 'validation'; its splits are \['test'\]: set eval.hf_split"):
        check_hf_eval(_eval_cfg(rgb_folder, hf_split="validation"), 3)


def test_missing_column_names_the_columns(fm_saved):
    with pytest.raises(
        ValueError,
        match=r"no column 'img'; its columns are \['image', 'label'\]: set "
        r"eval.hf_image_column",
    ):
        check_hf_eval(_eval_cfg(fm_saved, hf_image_column="img"), 10)
    with pytest.raises(ValueError, match="no column 'fine_label'.*set eval.hf_label_column"):
        check_hf_eval(_eval_cfg(fm_saved, hf_label_column="fine_label"), 10)


def test_undetectable_or_non_integer_label_column(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"image": [Image.new("L", (8, 8))], "label": ["cat"]}, features=features)
    ds.save_to_disk(str(tmp_path / "s"))
    with pytest.raises(ValueError, match="0 ClassLabel columns.*set eval.hf_label_column"):
        check_hf_eval(_eval_cfg(tmp_path / "s"), 10)
    with pytest.raises(ValueError, match="not integer class labels: set eval.hf_label_column to a ClassLabel"):
        check_hf_eval(_eval_cfg(tmp_path / "s", hf_label_column="label"), 10)


def test_labels_outside_the_teachers_classes(fm_split, tmp_path):
    names = list(FASHION_MNIST_CLASSES) + ["extra 1", "extra 2"]
    _fm_dataset(*fm_split, names=names).save_to_disk(str(tmp_path / "twelve"))
    with pytest.raises(ValueError, match="has 12 classes in 'label' but the teacher has 10.*set eval.hf_label_column"):
        check_hf_eval(_eval_cfg(tmp_path / "twelve"), 10)
    ints = datasets.Dataset.from_dict(
        {"image": [Image.new("L", (28, 28))] * 2, "cls": [3, 11]},
        features=datasets.Features({"image": datasets.Image(), "cls": datasets.Value("int64")}),
    )
    ints.save_to_disk(str(tmp_path / "ints"))
    with pytest.raises(ValueError, match=r"labels in \[3, 11\] in 'cls', the teacher has classes 0..9: evaluate"):
        check_hf_eval(_eval_cfg(tmp_path / "ints", hf_label_column="cls"), 10)


def test_class_names_that_disagree_name_both_lists(fm_split, tmp_path):
    names = list(reversed(FASHION_MNIST_CLASSES))
    _fm_dataset(*fm_split, names=names).save_to_disk(str(tmp_path / "reversed"))
    e = _eval_cfg(tmp_path / "reversed")
    with pytest.raises(ValueError) as err:
        check_eval_data(e, 10, 1, list(FASHION_MNIST_CLASSES))
    text = str(err.value)
    assert "Ankle boot, Bag" in text and "T-shirt/top, Trouser" in text and "first at index 0" in text
    assert "set eval.hf_match_class_names=false" in text
    check_eval_data(_eval_cfg(tmp_path / "reversed", hf_match_class_names=False), 10, 1, list(FASHION_MNIST_CLASSES))
    # same names up to case, separators and synonyms are accepted
    check_hf_eval(_eval_cfg(tmp_path / "reversed"), 10, 1, [n.upper().replace(" ", "_") + ", x" for n in names])


def test_grey_vs_colour_mismatch(fm_saved, rgb_folder):
    with pytest.raises(
        ValueError,
        match=r"grey images \(PIL mode L\) but the teacher takes colour input "
        r"\(teacher.in_channels=3\): evaluate on the colour set",
    ):
        check_eval_data(_eval_cfg(fm_saved), 10, in_channels=3)
    with pytest.raises(
        ValueError,
        match=r"colour images \(PIL mode RGB\) but the teacher takes grey input "
        r"\(teacher.in_channels=1\): evaluate on the grey set",
    ):
        check_eval_data(_eval_cfg(rgb_folder), 3, in_channels=1)


def test_hub_id_is_loaded_through_load_dataset(monkeypatch, fm_saved):
    """A hub id goes to datasets.get_dataset_split_names / load_dataset (mocked: no network)."""
    calls = []
    saved = datasets.load_from_disk(str(fm_saved))
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda path: ["train", "test"])
    monkeypatch.setattr(datasets, "load_dataset", lambda path, **kw: calls.append((path, kw)) or saved)
    ds, split = open_hf_dataset("zalando-datasets/fashion_mnist", "", streaming=True)
    assert split == "test" and calls == [("zalando-datasets/fashion_mnist", {"split": "test", "streaming": True})]

    def offline(path):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "get_dataset_split_names", offline)
    with pytest.raises(ValueError, match="save_to_disk.*pass that folder as eval.hf_path"):
        open_hf_dataset("ILSVRC/imagenet-1k", "validation")


def test_spec_of_a_transformers_folder(hf_teacher_dir, tmp_path):
    from nayer_scale.models.hf import read_hf_model_spec

    spec = read_hf_model_spec(f"hf:{hf_teacher_dir}")
    assert (spec.kind, spec.model_name, spec.num_classes, spec.in_channels) == (
        "transformers",
        "ResNetForImageClassification",
        10,
        1,
    )
    assert spec.class_names == FASHION_MNIST_CLASSES and spec.mean == (0.2860,) and spec.std == (0.3530,)
    assert (spec.image_size, spec.eval_resize) == (28, 28)
    # the published image-processor conventions: MobileNetV2 (resize 256, crop 224), ConvNeXt/ResNet (crop_pct)
    mbv2 = _save_tiny_resnet(
        tmp_path / "a",
        preprocessor={
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": True,
            "size": {"shortest_edge": 256},
            "image_mean": [0.5],
            "image_std": [0.5],
        },
    )
    assert (read_hf_model_spec(str(mbv2)).image_size, read_hf_model_spec(str(mbv2)).eval_resize) == (224, 256)
    r50 = _save_tiny_resnet(
        tmp_path / "b",
        preprocessor={"crop_pct": 0.875, "size": {"shortest_edge": 224}, "image_mean": [0.485], "image_std": [0.229]},
    )
    assert (read_hf_model_spec(str(r50)).image_size, read_hf_model_spec(str(r50)).eval_resize) == (224, 256)


def test_load_hf_teacher_returns_logits_and_is_hooked(hf_teacher_dir):
    from nayer_scale.models import get_classifier
    from nayer_scale.models.sources import build_teacher
    from nayer_scale.synthesis.bn_hooks import BNStatsHooks

    teacher = build_teacher(f"hf:{hf_teacher_dir}", None, 10, 1)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.rand(3, 1, 28, 28)
    logits = teacher(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, 10)
    from transformers import AutoModelForImageClassification

    reference = AutoModelForImageClassification.from_pretrained(str(hf_teacher_dir)).eval()
    torch.testing.assert_close(logits, reference(pixel_values=x).logits)
    assert get_classifier(teacher).out_features == 10
    hooks = BNStatsHooks(teacher, 0.9)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in teacher.modules())
    assert n_bn == 6 and len(hooks.layers) == n_bn


def test_teacher_without_batchnorm_is_refused_with_why(tmp_path):
    from transformers import ConvNextConfig, ConvNextForImageClassification, ViTConfig, ViTForImageClassification

    from nayer_scale.models.io import TeacherLoadError
    from nayer_scale.models.sources import build_teacher

    ConvNextForImageClassification(
        ConvNextConfig(num_labels=3, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1])
    ).save_pretrained(str(tmp_path / "convnext"))
    ViTForImageClassification(
        ViTConfig(
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
            image_size=16,
            patch_size=8,
            num_labels=3,
        )
    ).save_pretrained(str(tmp_path / "vit"))
    for name in ("convnext", "vit"):
        with pytest.raises(TeacherLoadError) as err:
            build_teacher(f"hf:{tmp_path / name}", None, 3, 3)
        text = str(err.value)
        assert "has no BatchNorm layer" in text and "LayerNorm" in text
        assert "running mean and variance" in text and "Use a BatchNorm teacher (ResNet, MobileNetV2" in text


def test_bad_folders_are_refused(tmp_path, hf_teacher_dir):
    from nayer_scale.models.io import TeacherLoadError
    from nayer_scale.models.sources import build_teacher

    with pytest.raises(TeacherLoadError, match="does not exist; give a model folder"):
        build_teacher(f"hf:{tmp_path / 'missing'}", None, 10, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TeacherLoadError, match="no config.json.*give a transformers model folder"):
        build_teacher(f"hf:{tmp_path / 'empty'}", None, 10, 1)
    with pytest.raises(TeacherLoadError, match="the weights are the model folder's; set teacher.weights= "):
        build_teacher(f"hf:{hf_teacher_dir}", "w.safetensors", 10, 1)
    with pytest.raises(TeacherLoadError, match="has 10 classes but 3 class names.*set teacher.class_names=id2label"):
        build_teacher(f"hf:{hf_teacher_dir}", None, 3, 1)


def test_config_fields_are_filled_from_the_folder_or_refused(tmp_path, hf_teacher_dir, fm_saved):
    from nayer_scale.config import DEMO_TEACHER, NayerConfig
    from nayer_scale.models.hf import resolve_hf_teacher

    cfg = NayerConfig()
    cfg.teacher.arch, cfg.teacher.weights = f"hf:{hf_teacher_dir}", DEMO_TEACHER  # the default preset's weights
    cfg.teacher.class_names = "fashion_mnist"
    cfg.validate()
    resolved = resolve_hf_teacher(cfg)
    assert resolved.class_names == list(FASHION_MNIST_CLASSES)
    t = resolved.teacher
    assert (t.weights, t.class_names, t.mean, t.std, t.in_channels, t.image_size) == (
        "",
        "id2label",
        (0.2860,),
        (0.3530,),
        1,
        28,
    )
    assert resolved.eval_resize == 28
    assert cfg.teacher.weights == DEMO_TEACHER and cfg.eval.resize == 0  # the caller's config is not changed
    cfg.teacher, cfg.eval.resize = resolved.teacher, resolved.eval_resize  # as the run applies it
    assert resolve_hf_teacher(cfg).class_names == list(FASHION_MNIST_CLASSES)  # the filled config (run.yaml): same

    def conflict(**teacher):
        c = NayerConfig()
        c.teacher.arch = f"hf:{hf_teacher_dir}"
        for key, value in teacher.items():
            setattr(c.teacher, key, value)
        return c

    with pytest.raises(
        ConfigError,
        match=r"teacher.image_size=32 .*gives 28: remove the override or set "
        r"teacher.image_size=28",
    ):
        resolve_hf_teacher(conflict(image_size=32))
    with pytest.raises(
        ConfigError, match=r"teacher.mean=0.5 .*gives 0.286: remove the override or set teacher.mean=0.286"
    ):
        resolve_hf_teacher(conflict(mean=(0.5,), std=(0.5,)))
    with pytest.raises(ConfigError, match="teacher.weights=w.pth with teacher.arch=hf:.*set teacher.weights= "):
        resolve_hf_teacher(conflict(weights="w.pth"))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(reversed(FASHION_MNIST_CLASSES)))
    with pytest.raises(
        ConfigError,
        match=r"gives 10 names \['Ankle boot'.*trained on 10 classes \['T-shirt/top'.*"
        r"set teacher.class_names=id2label",
    ):
        resolve_hf_teacher(conflict(class_names=str(names)))
    with pytest.raises(ConfigError, match="teacher.class_names=id2label .*needs teacher.arch=hf:"):
        NayerConfig().teacher.__class__(class_names="id2label").validate()


def test_generic_id2label_needs_class_names(tmp_path):
    from nayer_scale.config import NayerConfig
    from nayer_scale.models.hf import resolve_hf_teacher

    folder = _save_tiny_resnet(tmp_path / "generic", names=[f"LABEL_{i}" for i in range(10)])
    cfg = NayerConfig()
    cfg.teacher.arch = f"hf:{folder}"
    with pytest.raises(
        ConfigError,
        match=r"only generic id2label names \(LABEL_0.*set teacher.class_names to a "
        r"dataset key or a .txt file with its 10 class names",
    ):
        resolve_hf_teacher(cfg)
    cfg.teacher.class_names = "cifar10"
    assert resolve_hf_teacher(cfg).class_names[0] == "airplane"


def test_hub_id_downloads_json_first_then_weights(monkeypatch, hf_teacher_dir):
    """A hub id reads config.json / preprocessor_config.json (BatchNorm and size checks) before the
    weights are fetched (both mocked with the local folder: no network)."""
    import huggingface_hub

    from nayer_scale.models.hf import load_model_folder

    calls = []
    monkeypatch.setattr(
        huggingface_hub,
        "hf_hub_download",
        lambda repo, name: calls.append(("json", repo, name)) or str(hf_teacher_dir / name),
    )
    monkeypatch.setattr(
        huggingface_hub,
        "snapshot_download",
        lambda repo, allow_patterns: calls.append(("snapshot", repo)) or str(hf_teacher_dir),
    )
    model, spec = load_model_folder("hf:someone/tiny-resnet")
    assert spec.source == "someone/tiny-resnet" and model(torch.rand(1, 1, 28, 28)).shape == (1, 10)
    assert calls == [
        ("json", "someone/tiny-resnet", "config.json"),
        ("json", "someone/tiny-resnet", "preprocessor_config.json"),
        ("snapshot", "someone/tiny-resnet"),
    ]


def test_single_saved_split_names_the_recorded_split(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"label": [0, 1]}, split="test")
    ds.save_to_disk(str(tmp_path / "one"))
    with pytest.raises(ValueError, match=r"was saved from split 'test', not 'validation': set eval.hf_split=test"):
        open_hf_dataset(str(tmp_path / "one"), "validation")
    assert open_hf_dataset(str(tmp_path / "one"), "")[1] == "test"
