"""Tasks: what an NCA is trained to do, one module each, through :data:`ncacli.registry.TASKS`.

A task says what a state starts as, which channels the update may not write (the condition: a class, an
input image), how a batch is drawn from and written back to the pool, what is measured and how (the
objective and the evaluation), what a perturbation is, and how a state is shown. Built in: ``image``
(grow a target image: growing / persistent / regenerating / conditional), ``text`` (towards a CLIP prompt),
``texture`` (a VGG style loss), ``pixels`` (the picture's pixels optimised directly, nca-clip's baseline),
``classify`` (self-classifying digits), ``video`` (the next frames of a video), ``latent`` (growth in an
autoencoder's latent space), ``translate`` (image-to-image), ``latent-translate`` (the same in a latent
space) and ``latent-inpaint`` (filling holes there). See ``docs/plugins.md`` for adding one.
"""

from ncacli.tasks.base import Asked, Batch, DatasetTask, Measuring, Schedule, Showing, Task, Training, task_for

__all__ = ["Asked", "Batch", "DatasetTask", "Measuring", "Schedule", "Showing", "Task", "Training", "task_for"]
