"""Publishing a run as hub artifacts (``python -m nayer_scale.export RUN --format hf OUT``): the memory
bank as a ``datasets`` dataset with a dataset card, the student as a model folder (nayer-scale's, or
timm's for a student with timm's keys) with a model card. The cards are read back with
``huggingface_hub``'s ``ModelCard.load`` / ``DatasetCard.load``; the dataset with ``load_from_disk``; the
student through the project's own ``teacher.arch=hf:<folder>``. Offline: random weights, tmp folders,
the one upload mocked. The real timm / torchvision loading of a timm-format student is in
``tests/unit/test_vision_teachers.py`` (the vision environment).

The runs of this topic (distillations, subprocesses) are in tests/integration/test_export_runs.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")  # declared in the "hf" extra (part of "dev")

from huggingface_hub import DatasetCard, ModelCard  # noqa: E402

from nayer_scale.config import EvalConfig  # noqa: E402
from nayer_scale.data import FASHION_MNIST_CLASSES, build_eval_source  # noqa: E402


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path_factory, monkeypatch):
    """Arrow caches of the datasets builders go to a temporary folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf_cache"))


def _eval_cfg(path, **changes) -> EvalConfig:
    return EvalConfig(dataset="hf", hf_path=str(path), batch_size=64, num_workers=0, **changes).validate()


def _collect(source):
    batches = list(source())
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


SUMMARY = {
    "method": "nayer",
    "teacher_top1": 0.9279,
    "student_top1": 0.8887,
    "student_agreement": 0.88,
    "eval_images": 10000,
    "device_hours": 0.3994,
    "device_hours_unit": "CPU-hours",
    "num_processes": 2,
    "device_kind": "cpu",
}


def write_run(
    run: Path,
    *,
    student: str = "resnet8",
    preset: str = "fashion_mnist",
    names=FASHION_MNIST_CLASSES,
    summary: dict | None = SUMMARY,
    teacher: dict | None = None,
    bank: bool = True,
) -> Path:
    """A run folder as the trainer leaves it, written with the project's own writers: config.json,
    run.yaml, summary.json, student.safetensors (with its metadata: ``student``, the preset teacher's
    channels, size, mean and std) and a memory bank of two processes x two synthesis batches of 5 images.
    ``teacher`` overrides fields of the config's teacher section."""
    from nayer_scale.memory import MemoryBank
    from nayer_scale.models import build_model
    from nayer_scale.models.io import save_model
    from nayer_scale.recipes import get_preset
    from nayer_scale.storage import atomic_write_json

    cfg = get_preset(preset)
    cfg.run.run_dir = str(run)
    run.mkdir(parents=True)
    config = {**cfg.to_dict(), "resolved": {}, "sessions": []}
    config["teacher"].update(teacher or {})
    atomic_write_json(run / "config.json", config)
    (run / "run.yaml").write_text(cfg.to_yaml())
    t = cfg.teacher
    if bank:
        gen = torch.Generator().manual_seed(0)
        for rank in range(2):
            memory = MemoryBank(run / "memory", rank=rank, world_size=2, cache="cpu")
            for batch in range(2):
                memory.write(
                    torch.randint(
                        0, 256, (5, t.in_channels, t.image_size, t.image_size), generator=gen, dtype=torch.uint8
                    ),
                    torch.tensor([rank, batch, 2, 3, 4 + rank]),
                    {"epoch": batch},
                )
    torch.manual_seed(1)
    meta = {
        "arch": student,
        "num_classes": str(len(names)),
        "in_channels": str(t.in_channels),
        "image_size": str(t.image_size),
        "mean": json.dumps(t.mean),
        "std": json.dumps(t.std),
        "class_names": json.dumps(list(names)),
        "config": cfg.to_json(),
    }
    save_model(build_model(student, len(names), t.in_channels), run / "student.safetensors", meta)
    if summary is not None:
        atomic_write_json(run / "summary.json", summary)
    return run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The Fashion-MNIST preset's run: resnet20 teacher (the shipped demo), resnet8 student."""
    return write_run(tmp_path_factory.mktemp("runs") / "fm")


def _run_files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _reference_student(run: Path, arch: str, num_classes: int, in_channels: int):
    from nayer_scale.models import build_model
    from nayer_scale.models.io import load_state_dict_file

    model = build_model(arch, num_classes, in_channels)
    model.load_state_dict(load_state_dict_file(run / "student.safetensors"))
    return model.eval()


# ---------------------------------------------------------------------------------------------
# The dataset and the student folder


def test_export_writes_a_dataset_and_a_student_folder(finished_run, tmp_path, capsys):
    from nayer_scale.export import main
    from nayer_scale.memory import MemoryBank

    before = _run_files(finished_run)
    assert (
        main(
            [
                str(finished_run),
                "--format",
                "hf",
                str(tmp_path / "out"),
                "--command",
                "accelerate launch launch/fashion_mnist.py",
            ]
        )
        == 0
    )
    assert _run_files(finished_run) == before  # the run folder is read, never changed
    assert "dataset:" in capsys.readouterr().out

    dd = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    ds = dd["train"]
    assert len(ds) == 20 and ds.features["label"].names == list(FASHION_MNIST_CLASSES)
    assert isinstance(ds.features["image"], datasets.Image)
    bank = MemoryBank(finished_run / "memory", rank=2, world_size=3, cache="cpu")
    bank.refresh()
    assert ds["label"] == bank.labels.tolist()
    assert ds["process"] == [0] * 10 + [1] * 10 and ds["batch"] == ([0] * 5 + [1] * 5) * 2
    first = np.array(ds[5]["image"])  # rank 0, synthesis batch 1, first image: the same pixels
    assert np.array_equal(first, bank.images_of(0, 1)[0, 0].numpy())
    for i in range(len(ds)):  # every image, in the bank's logical order
        rank, index, k = i // 10, (i // 5) % 2, i % 5
        assert np.array_equal(np.array(ds[i]["image"]), bank.images_of(rank, index)[k, 0].numpy())
    card = (tmp_path / "out" / "dataset" / "README.md").read_text()
    assert "task_categories" in card and "resnet20" in card and "88.87%" in card and "92.79%" in card
    assert "0.3994 CPU-hours" in card and "synthesis:" in card  # the run's numbers and its run.yaml

    # the synthetic set is itself an eval.dataset=hf source
    e = _eval_cfg(tmp_path / "out" / "dataset", hf_split="train")
    images, labels = _collect(build_eval_source(e, 1, 28, 10, class_names=list(FASHION_MNIST_CLASSES)))
    assert images.shape == (20, 1, 28, 28) and labels.tolist() == ds["label"]


def test_exported_student_loads_back_as_a_teacher(finished_run, tmp_path):
    from nayer_scale.config import NayerConfig
    from nayer_scale.export import export_student
    from nayer_scale.models.hf import resolve_hf_teacher
    from nayer_scale.models.sources import build_teacher

    folder = export_student(finished_run, tmp_path / "student", command="accelerate launch launch/fashion_mnist.py")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md", "run.yaml"}
    config = json.loads((folder / "config.json").read_text())
    assert (config["architecture"], config["num_classes"], config["in_channels"], config["mean"]) == (
        "resnet8",
        10,
        1,
        [0.2860],
    )
    card = (folder / "README.md").read_text()
    for text in ("resnet20", "nayer", "88.87%", "0.3994 CPU-hours", "accelerate launch launch/fashion_mnist.py"):
        assert text in card

    teacher = build_teacher(f"hf:{folder}", None, 10, 1)
    reference = _reference_student(finished_run, "resnet8", 10, 1)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(teacher(x), reference(x))
    cfg = NayerConfig()
    cfg.teacher.arch = f"hf:{folder}"
    resolved = resolve_hf_teacher(cfg)
    assert resolved.class_names == list(FASHION_MNIST_CLASSES) and resolved.teacher.image_size == 28


def test_push_to_hub_uploads_card_then_dataset_and_student(finished_run, tmp_path, monkeypatch):
    import huggingface_hub

    from nayer_scale.export import export_hf

    calls = []

    class FakeApi:
        def create_repo(self, repo, repo_type, exist_ok):
            calls.append(("create", repo, repo_type))

        def upload_file(self, path_or_fileobj, path_in_repo, repo_id, repo_type):
            calls.append(("card", repo_id, Path(path_or_fileobj).read_text().startswith("---")))

        def upload_folder(self, folder_path, repo_id, repo_type):
            calls.append(("folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(
        datasets.DatasetDict, "push_to_hub", lambda self, repo: calls.append(("push", repo, len(self["train"])))
    )
    export_hf(finished_run, tmp_path / "out", push_to_hub="me/fm-synthetic", push_student_to_hub="me/fm-resnet8")
    assert calls == [
        ("create", "me/fm-synthetic", "dataset"),
        ("card", "me/fm-synthetic", True),
        ("push", "me/fm-synthetic", 20),
        ("create", "me/fm-resnet8", "model"),
        ("folder", "me/fm-resnet8", ["README.md", "config.json", "model.safetensors", "run.yaml"]),
    ]
    # the student's card names the pushed synthetic set as its training data, and its own repository
    card = ModelCard.load(tmp_path / "out" / "student" / "README.md")
    assert card.data.datasets == ["me/fm-synthetic"] and card.data.model_name == "fm-resnet8"
    assert 'load_model_folder("me/fm-resnet8")' in card.text


def test_export_errors_name_the_fix(tmp_path, finished_run):
    from nayer_scale.export import export_student, main

    assert main([str(tmp_path), "--format", "hf", str(tmp_path / "out")]) == 2
    with pytest.raises(FileNotFoundError, match="not a run folder .*give the run.run_dir of a run"):
        export_student(tmp_path, tmp_path / "out")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_bytes((finished_run / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="has not finished; continue it with run.resume=true"):
        export_student(unfinished, tmp_path / "out")
    with pytest.raises(ValueError, match="resnet8 has no timm equivalent.*--student-format nayer-scale"):
        export_student(finished_run, tmp_path / "out", student_format="timm")


# ---------------------------------------------------------------------------------------------
# The cards: huggingface_hub card data, read back


def test_model_card_metadata(finished_run, tmp_path):
    from nayer_scale.export import export_student

    folder = export_student(finished_run, tmp_path / "student", license="apache-2.0")
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.pipeline_tag == "image-classification" and data.library_name == "nayer-scale"
    assert data.license == "apache-2.0" and data.base_model is None  # the shipped demo teacher has no hub id
    assert {"knowledge-distillation", "data-free", "nayer", "image-classification"} <= set(data.tags)
    assert data.datasets is None  # the synthetic set was not pushed
    assert data.model_name == "resnet8-nayer-from-resnet20"
    (result,) = data.eval_results  # model-index: the student's top-1 on the real test split
    assert (result.task_type, result.metric_type, result.metric_name) == ("image-classification", "accuracy", "top-1")
    assert result.metric_value == SUMMARY["student_top1"]
    assert (result.dataset_type, result.dataset_split) == ("zalando-datasets/fashion_mnist", "test")
    assert card.content.startswith("---\n") and "model-index" in card.content
    # the text sections: what it is, how it was made, how to use it, the numbers and the command
    for text in (
        "# resnet8 distilled without data from resnet20",
        "## How it was made",
        "## Use",
        "## Numbers",
        "88.87%",
        "92.79%",
        "0.3994 CPU-hours",
        "config=run.yaml",
    ):
        assert text in card.text


def test_unfinished_run_has_no_model_index(tmp_path):
    from nayer_scale.export import export_student

    run = write_run(tmp_path / "run", summary=None, bank=False)
    data = ModelCard.load(export_student(run, tmp_path / "student") / "README.md").data
    assert data.eval_results is None and data.pipeline_tag == "image-classification"


@pytest.mark.parametrize(
    "teacher,hub_id",
    [
        ({"arch": "hf:microsoft/resnet-50", "weights": ""}, "microsoft/resnet-50"),
        ({"arch": "hf:/models/resnet-50", "weights": ""}, None),  # a local folder
        ({"arch": "tv_resnet50", "weights": "hf-hub:timm/resnet50.tv_in1k"}, "timm/resnet50.tv_in1k"),
        ({"arch": "wrn40_2", "weights": "hf-hub:me/wrn/weights/best.safetensors"}, "me/wrn"),
        ({"arch": "timm:resnet50.a1_in1k", "weights": "/ckpt/model.safetensors"}, "timm/resnet50.a1_in1k"),
        ({"arch": "timm:resnet50.a1_in1k", "weights": "hf-hub:timm/resnet50.a1_in1k"}, "timm/resnet50.a1_in1k"),
        ({"arch": "timm:resnet50", "weights": "/ckpt/model.safetensors"}, None),  # no tag: timm's default, unknown
        ({"arch": "timm:resnet50.a1_in1k", "weights": ""}, None),  # a random teacher
        ({"arch": "tv_resnet50", "weights": "torchvision:resnet50.IMAGENET1K_V2"}, None),
        ({"arch": "resnet20", "weights": "teacher.safetensors"}, None),
    ],
)
def test_teacher_hub_id(teacher, hub_id):
    from nayer_scale.export.cards import teacher_hub_id

    assert teacher_hub_id(teacher) == hub_id


def test_base_model_is_the_hub_teacher(tmp_path):
    from nayer_scale.export import export_hf

    run = write_run(tmp_path / "run", teacher={"arch": "timm:resnet50.a1_in1k", "weights": "/ckpt/model.safetensors"})
    written = export_hf(run, tmp_path / "out")
    data = ModelCard.load(written["student"] / "README.md").data
    assert data.base_model == "timm/resnet50.a1_in1k" and data.model_name == "resnet8-nayer-from-resnet50.a1_in1k"
    dataset = DatasetCard.load(written["dataset"] / "README.md")
    assert dataset.data.nayer_scale["teacher_hub_id"] == "timm/resnet50.a1_in1k"
    assert dataset.data.nayer_scale["teacher_weights"] == "model.safetensors"  # a local file: its name only
    assert "[timm/resnet50.a1_in1k](https://huggingface.co/timm/resnet50.a1_in1k)" in dataset.text


def test_dataset_card_metadata(finished_run, tmp_path):
    from nayer_scale.export import export_memory_dataset

    card = DatasetCard.load(export_memory_dataset(finished_run, tmp_path / "dataset") / "README.md")
    data = card.data
    assert data.task_categories == ["image-classification"] and data.size_categories == ["n<1K"]
    assert data.license == "other" and {"synthetic", "knowledge-distillation", "data-free", "nayer"} <= set(data.tags)
    assert data.nayer_scale["teacher"] == "resnet20" and data.nayer_scale["method"] == "nayer"
    assert (data.nayer_scale["images"], data.nayer_scale["processes"]) == (20, 2)
    info = data.dataset_info  # what datasets writes: the features and the split's size
    assert [f["name"] for f in info["features"]] == ["image", "label", "process", "batch"]
    assert info["features"][1]["dtype"]["class_label"]["names"]["9"] == "Ankle boot"
    assert info["splits"] == [{"name": "train", "num_bytes": info["splits"][0]["num_bytes"], "num_examples": 20}]
    for text in (
        "**synthetic** images",
        "from the teacher `resnet20`",
        "Method: nayer",
        "PNG (grey, 28 x 28 pixels)",
        "by 2 process(es)",
        "## Features",
        "88.87%",
        "```yaml\n",
    ):
        assert text in card.text


def test_size_categories():
    from nayer_scale.export.cards import size_category

    assert [size_category(n) for n in (0, 999, 1000, 45_000, 1_281_167)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


# ---------------------------------------------------------------------------------------------
# A student with timm's keys is a timm repository


def test_resnet_student_is_written_as_a_timm_repository(tmp_path):
    from nayer_scale.config import NayerConfig
    from nayer_scale.export import export_student
    from nayer_scale.lte import resolve_class_names
    from nayer_scale.models.hf import read_hf_model_spec, resolve_hf_teacher
    from nayer_scale.models.sources import build_teacher

    names = resolve_class_names("cifar10")
    run = write_run(tmp_path / "run", student="tv_resnet18", preset="cifar10", names=names)
    folder = export_student(run, tmp_path / "student")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md", "run.yaml"}
    config = json.loads((folder / "config.json").read_text())
    pre = config["pretrained_cfg"]  # timm's save_for_hf layout
    assert (config["architecture"], config["num_classes"], config["num_features"], config["global_pool"]) == (
        "resnet18",
        10,
        512,
        "avg",
    )
    assert config["label_names"] == names and config["model_args"] == {
        "num_classes": 10,
        "in_chans": 3,
        "global_pool": "avg",
    }
    # the preset evaluates on nothing (eval.dataset=none): timm's default crop_pct
    assert (pre["input_size"], pre["crop_pct"], pre["first_conv"], pre["classifier"]) == (
        [3, 32, 32],
        0.875,
        "conv1",
        "fc",
    )
    assert "library_name" not in config and config["nayer_scale_architecture"] == "tv_resnet18"
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "timm" and "timm" in card.data.tags
    assert 'timm.create_model("hf-hub:<hub id>", pretrained=True)' in card.text
    assert "torchvision.models.resnet18(num_classes=10)" in card.text

    # the project's own hf: route reads it as a timm repository, without timm (the zoo's tv_resnet18)
    spec = read_hf_model_spec(str(folder))
    assert (spec.kind, spec.model_name, spec.num_classes, spec.image_size, spec.eval_resize) == (
        "timm",
        "resnet18",
        10,
        32,
        36,
    )
    teacher = build_teacher(f"hf:{folder}", None, 10, 3)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(teacher(x), _reference_student(run, "tv_resnet18", 10, 3)(x))
    cfg = NayerConfig()
    cfg.teacher.arch, cfg.teacher.class_names = f"hf:{folder}", "cifar10"
    resolved = resolve_hf_teacher(cfg)
    assert resolved.class_names == names and tuple(resolved.teacher.mean) == tuple(
        json.loads((run / "config.json").read_text())["teacher"]["mean"]
    )

    # asked for, the nayer-scale format instead
    plain = export_student(run, tmp_path / "plain", student_format="nayer-scale")
    assert json.loads((plain / "config.json").read_text())["architecture"] == "tv_resnet18"
    assert ModelCard.load(plain / "README.md").data.library_name == "nayer-scale"


def test_timm_crop_pct_gives_the_eval_resize_back(tmp_path):
    from nayer_scale.export.student import _crop_pct

    for size, resize in ((224, 256), (224, 0), (64, 73), (160, 182), (288, 320)):
        pct = _crop_pct({"eval": {"dataset": "imagenet", "resize": resize}}, size)
        assert int(size / pct) == (resize or round(size / 0.875))  # timm: floor(size / crop_pct)
    assert _crop_pct({"eval": {"dataset": "cifar10"}}, 32) == 1.0
