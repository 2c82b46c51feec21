"""A folder of class folders as a data source (``--data folder:DIR``): Keras' ``image_dataset_from_directory`` layout.

Layout::

    DIR/
      cat/001.jpg     # one folder per class (sorted names are the classes), pictures at any depth in it
      cat/002.png
      dog/a/003.jpg

It is one classification task, ``label``. The split of each picture comes from a hash of its path
under DIR (80 % train, 10 % val, 10 % test), so pictures added later never move the others; a DIR
holding ``train/`` (and ``val/`` or ``validation/``, ``test/``) folders, each laid out as above,
gives the splits instead. Files other than pictures (``.txt``, ``.DS_Store``) are ignored as Keras
ignores them; pictures that cannot be read (or lie in DIR itself, in no class folder) are left out
and listed in one warning.

Example:
    >>> FolderSource("/no/such/dir")
    Traceback (most recent call last):
    ...
    mtl_keras.errors.MtlError: picture folder not found: /no/such/dir
"""

from __future__ import annotations

import os

import numpy as np

from mtl_keras.data.describe import describe_tasks
from mtl_keras.data.picture_table import (
    PictureTable,
    PictureTableSource,
    probe_picture,
    report_problems,
    stable_split,
)
from mtl_keras.errors import MtlError
from mtl_keras.tasks import ClassificationTask

# Keras' own list (bmp, gif, jpeg, jpg, png) and the other formats the shared picture reader takes.
PICTURE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp", ".tif", ".tiff")
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
TASK = "label"


def _subfolders(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _pictures_under(path: str) -> list[str]:
    """Picture files under ``path``, at any depth, sorted (paths relative to ``path``)."""
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.relpath(os.path.join(root, n), path) for n in names
                  if os.path.splitext(n)[1].lower() in PICTURE_EXTENSIONS]
    return sorted(found)


def scan_folder(path: str) -> tuple[list, list, list]:
    """``(classes, [(relative path, class index, split or None)], loose pictures)`` of a class-folder tree.

    Args:
        path: the folder (class folders, or ``train``/``val``/``test`` folders of class folders).

    Returns:
        The sorted class names, every picture found (its split None when the folders do not give
        one), and the pictures lying in no class folder.

    Raises:
        MtlError: a missing folder, fewer than two class folders, or no picture at all.

    Example:
        >>> scan_folder("/no/such/dir")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: picture folder not found: /no/such/dir
    """
    if not os.path.isdir(path):
        raise MtlError(f"picture folder not found: {path}")
    top = _subfolders(path)
    split_layout = bool(top) and "train" in top and set(top) <= set(SPLIT_FOLDERS)
    roots = [(name, SPLIT_FOLDERS[name]) for name in top] if split_layout else [("", None)]
    classes = sorted({c for root, _ in roots for c in _subfolders(os.path.join(path, root))})
    if len(classes) < 2:
        raise MtlError(f"{path} needs one folder per class (at least 2) with the pictures inside; "
                       f"found {len(classes)}: {', '.join(classes) or 'none'}")
    index = {c: i for i, c in enumerate(classes)}
    pictures, loose = [], []
    for root, split in roots:
        base = os.path.join(path, root)
        loose += [os.path.join(root, n) for n in sorted(os.listdir(base))
                  if os.path.splitext(n)[1].lower() in PICTURE_EXTENSIONS and os.path.isfile(os.path.join(base, n))]
        for c in _subfolders(base):
            pictures += [(os.path.join(root, c, p), index[c], split) for p in _pictures_under(os.path.join(base, c))]
    if not pictures:
        raise MtlError(f"no pictures ({', '.join(PICTURE_EXTENSIONS)}) in the class folders of {path}")
    return classes, pictures, loose


def _read_folder(path: str):
    classes, pictures, loose = scan_folder(path)
    problems = [f"{p}: in no class folder" for p in loose]
    paths, names, splits, labels = [], [], [], []
    for rel, label, split in pictures:
        why = probe_picture(os.path.join(path, rel))
        if why:
            problems.append(f"{rel}: {why}")
            continue
        paths.append(os.path.join(path, rel))
        names.append(rel)
        splits.append(split or stable_split(rel.replace(os.sep, "/")))
        labels.append(label)
    if not paths:
        raise MtlError(f"none of the {len(pictures)} pictures in {path} is usable: {'; '.join(problems[:3])}")
    table = PictureTable(f"folder:{path}", paths, names, splits, {TASK: np.asarray(labels, np.int32)},
                         {TASK: np.ones(len(paths), np.float32)})
    report_problems(f"folder:{path}", problems)
    return classes, table, problems, any(split for _, _, split in pictures)


class FolderSource(PictureTableSource):
    """A folder with one subfolder of pictures per class, as one classification task ``label``.

    Args:
        path: the folder (see the module docstring for the layout).
        flip: allow random horizontal flips in training (turn off for text, digits, arrows...).

    Raises:
        MtlError: a missing folder, fewer than two class folders, no usable picture.

    Example:
        >>> FolderSource("")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: folder: needs a folder of class folders, e.g. folder:data/flowers
    """

    def __init__(self, path: str, flip: bool = True):
        path = os.path.expanduser(os.fspath(path))
        if not path:
            raise MtlError("folder: needs a folder of class folders, e.g. folder:data/flowers")
        self.name = f"folder:{path}"
        self.path = path
        self.flip_ok = bool(flip)
        self.classes, self.table, self.problems, self.split_by_folders = _read_folder(path)

    def tasks(self) -> dict:
        """``{"label": ClassificationTask}`` over the class folders' names.

        Returns:
            Task name -> ``Task``.
        """
        return {TASK: ClassificationTask(TASK, classes=list(self.classes))}

    def class_names(self) -> dict:
        """``{"label": the class names}``."""
        return {TASK: list(self.classes)}

    def describe(self) -> str:
        """What will train: the pictures per split, the task and its classes, the pictures left out.

        Returns:
            The text ``mtl-keras data folder:DIR`` prints.
        """
        counts = self.table.split_counts()
        how = "its train/val/test folders" if self.split_by_folders else "a hash of each picture's path"
        title = (f"{self.name}: {len(self.table)} pictures (train {counts['train']}, val {counts['val']}, "
                 f"test {counts['test']}), split by {how}")
        notes = [f"{len(self.problems)} problem(s), left out:", *(f"  {p}" for p in self.problems)] if self.problems else []
        return describe_tasks(title, self.tasks(), {TASK: "class folders"}, None, notes)
