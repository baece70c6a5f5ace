"""Normalisation constants, kept free of torch so that the command line can build its options
without importing it (``loftup --help`` answers at once)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: What the backbone is given (a featurizer's ``input_norm``): every featurizer takes the
#: ImageNet-normalised image, the tensor that guides the upsampler, and for a backbone trained
#: with other constants (CLIP, SigLIP) hands it on
INPUT_NORMS = {
    "imagenet": "as it is, which is what the paper's code does: the features every released "
    "upsampler was trained on (the default)",
    "own": "converted to the backbone's own mean and std first, as its own preprocessing does",
}
