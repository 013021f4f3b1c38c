"""The training engine shared by every experiment (see docs/internals.md)."""

from aejax.train.checkpoint import CheckpointError, CheckpointIO, check_shapes
from aejax.train.loop import TrainingDiverged, fit, fit_epochs, train_section
from aejax.train.optim import learning_rate, make_optimizer
from aejax.train.parallel import make_mesh, maybe_initialize_distributed, shard_batch
from aejax.train.restore import (
  find_run_config,
  restore_for_eval,
  restore_state,
  restore_variables,
  run_config,
)
from aejax.train.state import TrainState, apply_model, init_state, split_rngs
from aejax.train.step import make_train_step
from aejax.train.writer import Writer

__all__ = [
  "CheckpointError",
  "CheckpointIO",
  "TrainState",
  "TrainingDiverged",
  "Writer",
  "apply_model",
  "check_shapes",
  "find_run_config",
  "fit",
  "fit_epochs",
  "init_state",
  "learning_rate",
  "make_mesh",
  "make_optimizer",
  "make_train_step",
  "maybe_initialize_distributed",
  "restore_for_eval",
  "restore_state",
  "restore_variables",
  "run_config",
  "shard_batch",
  "split_rngs",
  "train_section",
]
