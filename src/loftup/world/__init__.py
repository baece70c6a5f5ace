"""The offline world: a backbone trained on the synthetic scenes, measurements in that world,
and ``loftup demo``, the whole method end to end in it.

Scenes themselves are data (:mod:`loftup.data.scenes`); the backbone is a featurizer
(:mod:`loftup.featurizers.scenes_vit`). Here: :mod:`.backbone` trains it, :mod:`.probe` measures
how much class its features carry and where; :mod:`.demo` runs the demo (its options in
:mod:`.config`, its held-out measurements in :mod:`.heldout`, its report in :mod:`.report`).
"""
