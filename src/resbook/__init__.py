"""ResNet Hands-On: the helpers the book's chapters share.

Importing :mod:`resbook` loads no deep-learning framework. Keras code lives in
``resbook.models.keras_resnet`` / ``resbook.train.keras_fit`` and PyTorch code
in ``resbook.models.torch_resnet`` / ``resbook.train.torch_loop``; a chapter
imports the side it needs (TensorFlow and PyTorch are kept in separate
processes: see the book's "How to run it" page).

Importing it changes nothing either: no environment variable, no handler.
What a chapter's run needs is done by :func:`~resbook.settings.describe_run`,
called once at the top of each chapter.
"""

from .errors import ResbookError
from .settings import describe_run, pick, profile

__version__ = "0.1.0"

__all__ = ["ResbookError", "describe_run", "pick", "profile", "__version__"]
