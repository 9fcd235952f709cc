"""Built-in tasks; importing this package registers them."""

from uqbench.tasks import digits, fashion_mnist, images, own_data, synthetic, uci  # noqa: F401
from uqbench.tasks.base import ShiftedSet, Split, Task, TaskData, TaskKind, tasks
from uqbench.tasks.own_data import ArrayTask, from_arrays

__all__ = ["ArrayTask", "ShiftedSet", "Split", "Task", "TaskData", "TaskKind", "from_arrays", "tasks"]
