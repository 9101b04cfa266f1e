"""Publish what a run made, as Hugging Face hub artifacts.

    python -m nayer_scale.export RUN_DIR --format hf OUT [--push-to-hub REPO] [--push-student-to-hub REPO]
                                 [--command "accelerate launch launch/distill.py ..."]
                                 [--student-format auto|timm|nayer-scale] [--license LICENSE]

writes

* ``OUT/dataset/`` (:mod:`~nayer_scale.export.dataset`): the memory bank as a ``datasets.DatasetDict``
  (``save_to_disk``) with one split, ``train``: one row per synthetic image, features ``image``
  (``Image``: PNG, grey or RGB), ``label`` (``ClassLabel`` with the run's class names), ``process`` (the
  rank that synthesised it) and ``batch`` (its synthesis batch = memory-bank shard index), saved in one
  arrow shard per process that wrote any, built by ``Dataset.from_generator`` one memory-bank shard at a
  time (bounded memory); plus ``README.md``, a ``huggingface_hub.DatasetCard`` (synthetic, teacher,
  method, size, features, numbers, ``run.yaml``; :mod:`~nayer_scale.export.cards`). ``--push-to-hub
  REPO`` uploads it (``DatasetDict.push_to_hub``, card first). The folder is itself an evaluation /
  training set: ``eval.dataset=hf eval.hf_path=OUT/dataset eval.hf_split=train``.
* ``OUT/student/`` (:mod:`~nayer_scale.export.student`): the distilled student (``student.safetensors``
  of the run) as ``model.safetensors``, ``config.json``, ``README.md`` (a ``huggingface_hub.ModelCard``:
  ``base_model`` = the teacher's hub id, ``datasets``, ``license``, tags, ``pipeline_tag``, a
  ``model-index`` with the student's top-1; text: teacher, method, top-1, device-hours, the command) and
  ``run.yaml``. A student with timm's keys (``tv_resnet18/34/50``) is a timm repository
  (``timm.create_model("hf-hub:REPO", pretrained=True)``); any other a nayer-scale model folder
  (``nayer_scale.models.io.save_model_folder``). ``teacher.arch=hf:OUT/student`` loads either back, so
  a distilled student can itself become a teacher. ``--push-student-to-hub REPO`` uploads the folder.

The run folder is only read.
"""

from .dataset import export_memory_dataset
from .publish import export_hf, main
from .student import export_student

__all__ = ["export_hf", "export_memory_dataset", "export_student", "main"]
