"""Reading RLDS datasets that tensorflow-datasets has prepared in a data dir: finding a dataset's folder and
version, refusing data this installation cannot read (TFRecord without TensorFlow), and each episode's steps as
arrays of the fields d4rl.py turns into transitions. Nothing is downloaded."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from flowkit.tasks import DatasetError

REQUIRED_FIELDS = ("observation", "action", "reward", "is_last", "is_terminal")
"""RLDS step fields the reader needs (discount and is_first are implied by them)."""
DEFAULT_DATA_DIR = "~/tensorflow_datasets"
"""tensorflow-datasets' own default data dir, used when neither an argument nor TFDS_DATA_DIR names one."""


def data_dir_of(data_dir: Path | str | None = None) -> Path:
    """The TFDS data dir: the argument, else TFDS_DATA_DIR, else tensorflow-datasets' default."""
    chosen = data_dir if data_dir is not None else os.environ.get("TFDS_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def split_name(name: str) -> tuple[str, str, str | None]:
    """'dataset/config[:version]' -> (dataset, config, version or None)."""
    match = re.fullmatch(r"([a-z0-9_]+)/([A-Za-z0-9_.-]+?)(?::(\d+\.\d+\.\d+))?", name)
    if match is None:
        raise DatasetError(
            f"dataset {name!r}: expected a TFDS name 'dataset/config' or 'dataset/config:version', "
            "for example 'd4rl_mujoco_hopper/v2-medium'"
        )
    return match.group(1), match.group(2), match.group(3)


def dataset_folder(name: str, data_dir: Path | str | None = None) -> Path:
    """The prepared folder of `name` in the data dir (its newest version unless `name` names one)."""
    dataset, config, version = split_name(name)
    root = data_dir_of(data_dir) / dataset / config
    versions = sorted(
        (tuple(int(part) for part in path.name.split(".")), path)
        for path in (root.iterdir() if root.is_dir() else ())
        if re.fullmatch(r"\d+\.\d+\.\d+", path.name) and (path / "dataset_info.json").is_file()
    )
    if version is not None:
        versions = [(number, path) for number, path in versions if path.name == version]
    if not versions:
        wanted = root / (version or "<version>")
        raise DatasetError(
            f"dataset {name!r} is not prepared in the TFDS data dir {data_dir_of(data_dir)}: no folder {wanted} "
            "holding a dataset_info.json was found. flowkit reads prepared data and downloads nothing; prepare it "
            f"where the network and TensorFlow are available (`tfds build {dataset}/{config} --data_dir DIR`, "
            "or tfds.load) and copy DIR here, then pass data_dir or set TFDS_DATA_DIR to it"
        )
    return versions[-1][1]


def file_format(folder: Path) -> str:
    """The format the folder is read in: ArrayRecord where it has it (as its format or, after `tfds convert_format`,
    an alternative one), else its own format (TFDS writes none for its default, TFRecord)."""
    try:
        info = json.loads((folder / "dataset_info.json").read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{folder / 'dataset_info.json'} cannot be read: {error}") from error
    formats = [str(info.get("fileFormat") or "tfrecord").lower()]
    formats += [str(alternative).lower() for alternative in info.get("alternativeFileFormats", [])]
    return "array_record" if "array_record" in formats else formats[0]


def _tensorflow_available() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def check_readable(name: str, data_dir: Path | str | None = None) -> Path:
    """Refuse, without reading it, data that is absent or that this installation cannot read; return its folder."""
    folder = dataset_folder(name, data_dir)
    found = file_format(folder)
    if found not in ("array_record", "tfrecord"):
        raise DatasetError(f"{folder}: file format {found!r}; the reader takes array_record and tfrecord")
    if found == "tfrecord" and not _tensorflow_available():
        raise DatasetError(
            f"{folder} holds TFRecord files, which need TensorFlow to read: install it (`pip install tensorflow-cpu`), "
            "or convert the dataset once where TensorFlow is installed (`tfds convert_format --dataset_version_dir="
            f"{folder} --out_file_format=array_record`): tensorflow-datasets reads ArrayRecord without TensorFlow"
        )
    return folder


def import_tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DatasetError(
            "reading D4RL needs tensorflow-datasets and array-record: pip install 'flowkit[d4rl]'"
        ) from error
    return tfds


def step_features(builder: Any, folder: Path) -> dict[str, Any]:
    """The RLDS step features of a prepared dataset, refusing one without the fields the reader needs."""
    features = builder.info.features
    found = getattr(features["steps"], "feature", None) if "steps" in features.keys() else None  # noqa: SIM118
    if found is None:
        raise DatasetError(f"{folder}: not an RLDS dataset (no 'steps' feature holding a dataset of steps)")
    missing = [field for field in REQUIRED_FIELDS if field not in found]
    if missing:
        raise DatasetError(
            f"{folder}: its steps lack the field(s) {', '.join(missing)}; RLDS steps need "
            f"{', '.join(REQUIRED_FIELDS)} (found: {', '.join(sorted(found))})"
        )
    return found


def array_record_episodes(builder: Any, split: str) -> Any:
    """Each episode's steps as arrays (one per field, steps first), read without TensorFlow.

    The records are parsed whole with the parser tfds.data_source uses, rather than decoded step by step through
    the data source: the same values, a hundred times faster (1M steps in under a second).
    """
    tfds = import_tfds()
    alternative = getattr(builder.info.file_format, "value", None) != "array_record"  # beside TFRecord shards
    source = builder.as_data_source(split=split, **({"file_format": "array_record"} if alternative else {}))
    parser = tfds.core.example_parser.ExampleParserNp(builder.info.features.get_serialized_info())
    for index in range(len(source)):
        yield parser.parse_example(source.data_source[index])["steps"]


def tfrecord_episodes(builder: Any, split: str) -> Any:
    """Each episode's steps as arrays, read with TensorFlow (TFRecord data)."""
    tfds = import_tfds()
    episodes = builder.as_dataset(split=split).map(lambda episode: episode["steps"].batch(2**30).get_single_element())
    yield from tfds.as_numpy(episodes)


def episode_columns(steps: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    if isinstance(steps["observation"], dict):
        raise DatasetError(f"{where}: observations are a dictionary; the reader takes one vector per step")
    columns = {field: np.asarray(steps[field]) for field in REQUIRED_FIELDS}
    length = len(columns["is_last"])
    for field, column in columns.items():
        rank = 2 if field in ("observation", "action") else 1
        if column.ndim != rank or len(column) != length:
            raise DatasetError(
                f"{where}: step field {field!r} has shape {column.shape}; expected {length} steps of "
                f"{'vectors' if rank == 2 else 'scalars'}"
            )
    if columns["is_last"][:-1].any():
        raise DatasetError(f"{where}: is_last is set before the episode's last step")
    return columns


def read_episodes(name: str, data_dir: Path | str | None, split: str) -> tuple[Path, Any]:
    """The prepared folder of `name`, and its `split`'s episodes as columns of the fields the reader needs."""
    folder = check_readable(name, data_dir)
    builder = import_tfds().builder_from_directory(str(folder))
    step_features(builder, folder)
    if split not in builder.info.splits:
        raise DatasetError(f"{folder}: no split {split!r}; it has {', '.join(builder.info.splits)}")
    read = array_record_episodes if file_format(folder) == "array_record" else tfrecord_episodes
    episodes = read(builder, split)
    return folder, (
        episode_columns(steps, f"{folder} ({split}, episode {index})") for index, steps in enumerate(episodes)
    )
