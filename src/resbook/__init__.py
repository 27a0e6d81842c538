"""ResNet Hands-On: the helpers the book's chapters share.

Importing :mod:`resbook` loads no deep-learning framework. Keras code lives in
``resbook.models.keras_resnet`` / ``resbook.train.keras_fit`` and PyTorch code
in ``resbook.models.torch_resnet`` / ``resbook.train.torch_loop``; a chapter
imports the side it needs (TensorFlow and PyTorch are kept in separate
processes: see the book's "How to run it" page).
"""

from .errors import ResbookError, show_in_notebook
from .settings import describe_run, pick, profile

__version__ = "0.1.0"

# In a notebook, show a ResbookError as its one sentence instead of a traceback.
show_in_notebook()
__all__ = ["ResbookError", "describe_run", "pick", "profile", "__version__"]
