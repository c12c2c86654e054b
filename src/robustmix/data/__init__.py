"""Datasets: Fashion-MNIST, MNIST (IDX) and CIFAR-10/100 (python pickles), and your own data (``load``: an image
folder or a .npz/.pt file)."""

from .datasets import DATASETS, dataset_info, find_dataset, load_dataset, split_indices
from .readers import read_cifar_batch, read_idx
from .user import ImageSet, load

__all__ = ["DATASETS", "dataset_info", "find_dataset", "load_dataset", "split_indices", "read_idx", "read_cifar_batch",
           "load", "ImageSet"]
