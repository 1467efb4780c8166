"""soundsearch: find sounds by describing them in words.

A dual encoder (PaSST audio transformer or PANNs CNN + Hugging Face text encoder) trained
contrastively, as in Primus, Koutini & Widmer (DCASE 2023), plus a library index to search your
own sound collections. Importing this package touches no network and loads no model.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
