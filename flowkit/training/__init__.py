"""Training: compiled chunks of updates, the loop that runs them, and the run folders it fills.

chunk.py        a chunk of `log_every` updates as one compiled program, and the programs a process keeps
compiled_run.py one run's compiled pieces (CompiledRun): agent, task, training chunk, acting policy, evaluation
seeds.py        runs that differ only in seed as one program: their pytrees stacked, or one seed's as it is
run_progress.py a run's progress and timing, which its checkpoint keeps
seed_run.py     one seed's folder in a program: metrics, evaluations, checkpoints, result
loop.py         train / train_seeds: prepare, then per chunk train, log, evaluate, checkpoint; then finish
online.py       online fine-tuning after the offline updates: the growing replay buffer, one update per step
trackers.py     the experiment trackers (W&B, TensorBoard) a run's metrics also go to
"""

from flowkit.training.chunk import coefficient_arrays, compiled_cost, forget_compiled_chunks, make_chunk
from flowkit.training.compiled_run import CompiledRun, consistency_record
from flowkit.training.loop import train, train_seeds
from flowkit.training.run_progress import RunProgress
from flowkit.training.seed_run import DivergedError, EvaluationHook, RunStoppedError, RunTakenOverError
from flowkit.training.seeds import Seeds, stack_seeds

__all__ = [
    "CompiledRun",
    "DivergedError",
    "EvaluationHook",
    "RunProgress",
    "RunStoppedError",
    "RunTakenOverError",
    "Seeds",
    "coefficient_arrays",
    "compiled_cost",
    "consistency_record",
    "forget_compiled_chunks",
    "make_chunk",
    "stack_seeds",
    "train",
    "train_seeds",
]
