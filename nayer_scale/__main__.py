"""``python -m nayer_scale`` (and ``accelerate launch -m nayer_scale``): the ``nayer-scale`` command."""

from .cli import entry

if __name__ == "__main__":
    entry()
