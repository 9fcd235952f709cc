"""Built-in tasks; importing this package registers them."""

from uqbench.tasks import digits, fashion_mnist, images, own_data, synthetic, uci  # noqa: F401
from uqbench.tasks.base import Split, Task, TaskData, TaskKind, tasks

__all__ = ["Split", "Task", "TaskData", "TaskKind", "tasks"]
