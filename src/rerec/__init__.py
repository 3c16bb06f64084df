"""ReRec: reasoning recommendation assistants by reinforcement fine-tuning."""

__version__ = "0.1.0"
