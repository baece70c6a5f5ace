"""The offline world: a backbone trained on the synthetic scenes, and measurements in that world.

Scenes themselves are data (:mod:`loftup.data.scenes`); the backbone is a featurizer
(:mod:`loftup.featurizers.scenes_vit`). This package trains and measures them.
"""
