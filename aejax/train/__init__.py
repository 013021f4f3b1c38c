"""The training engine shared by every experiment (see docs/internals.md)."""

from aejax.train.checkpoint import CheckpointError, CheckpointIO, restore_state, restore_variables
from aejax.train.loop import TrainingDiverged, fit
from aejax.train.optim import make_optimizer
from aejax.train.parallel import make_mesh, maybe_initialize_distributed, shard_batch
from aejax.train.state import TrainState, apply_model, init_state, split_rngs
from aejax.train.step import make_eval_step, make_train_step
from aejax.train.writer import Writer

__all__ = [
    "CheckpointError", "CheckpointIO", "TrainState", "TrainingDiverged", "Writer", "apply_model",
    "fit", "init_state", "make_eval_step", "make_mesh", "make_optimizer", "make_train_step",
    "maybe_initialize_distributed", "restore_state", "restore_variables", "shard_batch", "split_rngs",
]
