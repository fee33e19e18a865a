"""A tiny concept-wise dataset for the concept-RSA stages: Pereira's file layout, 12 concepts in
3 categories, sentences per concept, planted brain RDMs (structure shared by the networks)."""

import os

import numpy as np

from alignment.data.pereira import PARADIGMS, PereiraDataset
from test_pereira import _contents, write_v5

C_SMALL = 12
CONCEPTS_SMALL = [f"{cat}{i}" for cat in ("animal", "tool", "food") for i in range(4)]
#: the categories table of the tiny dataset: concept → category (listed out of order on purpose)
CATEGORIES_SMALL = {c: c.rstrip("0123456789") for c in CONCEPTS_SMALL}
ATLASES_SMALL = {"languageLH": [[1, 2, 3, 4, 5, 6]], "visual": [[7, 8, 9, 10, 11, 12]]}
V_SMALL = 20
PARTICIPANTS = ("M01", "M02", "M03")


def make_concept_dataset(root, participants=PARTICIPANTS, seed=0, sentences=True, responses=None) -> PereiraDataset:
    """Files for every participant and paradigm: responses = a shared category structure + noise,
    or ``responses(rng)`` → (C, V_SMALL) when given."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((C_SMALL, 4)) + np.repeat(rng.standard_normal((3, 4)) * 2, 4, axis=0)
    for sid in participants:
        os.makedirs(os.path.join(root, sid), exist_ok=True)
        mixing = rng.standard_normal((4, V_SMALL))
        for paradigm in PARADIGMS:
            Y = latent @ mixing + 0.5 * rng.standard_normal((C_SMALL, V_SMALL)) if responses is None \
                else responses(rng)
            write_v5(os.path.join(root, sid, f"data_180concepts_{paradigm}.mat"),
                     _contents(Y, concepts=CONCEPTS_SMALL, atlases=ATLASES_SMALL))
    kwargs = {}
    if sentences:
        lines = ["concept\tsentence"] + [f"{c}\tThe {c} is here number {k}." for c in CONCEPTS_SMALL for k in range(2)]
        with open(os.path.join(root, "sentences.tsv"), "w") as f:
            f.write("\n".join(lines) + "\n")
        kwargs["sentences"] = "sentences.tsv"
    return PereiraDataset(root, n_concepts=C_SMALL, participants=list(participants), **kwargs)


def write_pointer(root) -> str:
    """A ``pereira2018.toml`` for the tiny dataset (12 concepts, the sentences table)."""
    path = os.path.join(root, "pereira2018.toml")
    with open(path, "w") as f:
        f.write(f'[pereira2018]\nroot = "."\nsentences = "sentences.tsv"\ncategories = "categories.tsv"\n'
                f'n_concepts = {C_SMALL}\n')
    with open(os.path.join(root, "categories.tsv"), "w") as f:
        f.write("concept\tcategory\n" + "".join(f"{c}\t{CATEGORIES_SMALL[c]}\n" for c in sorted(CONCEPTS_SMALL)))
    return path


def write_rsa_config(root, dataset: str, models, extra: str = "") -> str:
    """A run config with an ``[rsa]`` table and small statistics."""
    path = os.path.join(root, "rsa.toml")
    specs = ", ".join(f'"{m}"' for m in models)
    with open(path, "w") as f:
        f.write(f'[study]\ndataset = "{dataset}"\ndevice = "cpu"\n\n[rsa]\nmodels = [{specs}]\n'
                f'paradigms = ["sentences"]\nn_perm = 99\nn_boot = 30\n{extra}')
    return path
