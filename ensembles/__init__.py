"""Ensembles of aligned models (LLM-TOPLA, MARL-Focal, H3Fusion): a pool's answers on a labelled multiple-choice
set, focal diversity, pruning to diverse teams and learned fusion. See docs/ensembles.md."""
