"""Registered stages (see :mod:`alignment.stages.base`); importing this package registers the
built-in ones:

===============  ================================================================  ===========
stage            arrays                                                            analysis
===============  ================================================================  ===========
``ans``          raw pooled ANs at every TR: ``<branch>.L<layer>`` (T, N)           (input)
``encoding``     ridge prediction map: ``scores``, ``alphas``, ``p``, ``q`` (V,)    encoding
``encoding_fit`` the same fit without its null: ``scores``, ``alphas`` (V,); the   (input)
                 app's first look at a map while the null computes
``ceiling``      noise ceiling from the repeated segment: ``ceiling`` (V,)          ceiling
``atoms``        sparse dictionary: ``codes`` (N, K), ``atoms`` (K, T),             (input)
                 ``regressors`` (T, K)
``glm``          AR(5) GLM of the atoms, marginal by default: ``t``, ``beta``,     neuron_mapping
                 ``q`` (K, V); the joint GLM: ``t_joint``, ``q_joint`` (K, V)
``variance``     banded ridge per branch: ``r2``, ``shared`` (V,), ``unique`` (B,   variance_partition
                 V)
``integration``  VLM layer vs joint baseline: ``r_vlm``, ``r_joint``, ``diff``,   integration
                 ``p``, ``q``, ``sites`` (V,)
``lesion``       cross-validated lesion curves: ``random_mean``, ``ranked`` (F,),   lesion
                 ``rankings`` (L, N)
``crossmodal``   fusion layer under 3 conditions, tested: ``gain``, ``p_gain``,    crossmodal
                 ``dz_unified``, ``p_unified``, ``q_*`` (V,)
``specialization`` branches at one depth, tested: ``p_unique`` (B, V); image vs    specialization
                 text: ``dz_si``, ``p_si``, ``q_si`` (V,)
``concept_ans``, concept RSA on concept-wise datasets (:mod:`alignment.stages.rsa`), asked  (``[rsa]``)
``model_rdm``,   for by a run config's ``[rsa]`` table
``brain_rdm``,
``rsa``,
``rsa_compare``
===============  ================================================================  ===========

A new analysis is one module that defines its compute function and calls :func:`register`;
import it once (e.g. from here) and ``Study.get``, run configs and the catalog know it.
"""

from alignment.stages.base import (STAGES, Stage, Unit, analyses, default_analyses, register, stage,
                                   target_dict)
from alignment.stages import (features, encoding, ceiling, mapping, variance, integration, lesion,  # noqa: F401,E402
                               modality, rsa)

__all__ = ["STAGES", "Stage", "Unit", "analyses", "default_analyses", "register", "stage", "target_dict"]
