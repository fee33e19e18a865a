"""Analyses on encoding and neuron-mapping results (DESIGN §5.3–5.7).

- :mod:`~alignment.analyses.polarity` -- positive / negative BNs and ANs per layer and network
  (from the sign of the AN→BN coupling), the mirrored trend across layers, stability across
  dictionary seeds.
- :mod:`~alignment.analyses.modality` -- specialization index, variance partition, cross-modal
  gain, unified BNs, per-voxel modality labels.
- :mod:`~alignment.analyses.redundancy` -- links per voxel / AN, Dice overlap, lesion curves.
- :mod:`~alignment.analyses.integration` -- multimodal integration sites (VLM vs unimodal
  baselines, paired block test).
- :mod:`~alignment.analyses.lookup` -- AN ↔ BN link table for interactive lookups.
- :mod:`~alignment.analyses.rsa` -- concept RSA: RDMs, Spearman ρ, concept permutation p,
  bootstrap CIs, out-of-sample best layer, model differences, noise ceiling, partial ρ.

Network atlases and per-network summaries are in :mod:`alignment.networks`.
"""

from alignment.analyses.integration import IntegrationResult, integration_sites, time_blocks
from alignment.analyses.lookup import LayerLinks, LinkTable, link_scores
from alignment.analyses.modality import (
    MODALITY_LABELS,
    UnifiedShare,
    VariancePartition,
    cross_modal_gain,
    modality_labels,
    modality_summary,
    specialization_index,
    unified_share,
    variance_partition,
)
from alignment.analyses.polarity import (
    BNPolarity,
    GroupTrend,
    MirroredTrend,
    an_polarity_counts,
    bn_polarity,
    curve_arrays,
    group_trend,
    link_polarity,
    mirrored_trend,
    mirrored_trends,
    polarity_counts,
    polarity_curves,
    polarity_stability,
    polarity_tallies,
    voxel_polarity,
)
from alignment.analyses.redundancy import (
    LesionCurve,
    ans_per_voxel,
    dice_overlap,
    lesion_curve,
    links_per_an,
    links_per_voxel,
)

__all__ = [
    "IntegrationResult", "integration_sites", "time_blocks",
    "LayerLinks", "LinkTable", "link_scores",
    "MODALITY_LABELS", "UnifiedShare", "VariancePartition", "cross_modal_gain", "modality_labels",
    "modality_summary", "specialization_index", "unified_share", "variance_partition",
    "BNPolarity", "GroupTrend", "MirroredTrend", "an_polarity_counts", "bn_polarity", "curve_arrays",
    "group_trend", "link_polarity", "mirrored_trend", "mirrored_trends", "polarity_counts", "polarity_curves",
    "polarity_stability", "polarity_tallies", "voxel_polarity",
    "LesionCurve", "ans_per_voxel", "dice_overlap", "lesion_curve", "links_per_an", "links_per_voxel",
]
