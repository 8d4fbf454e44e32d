"""The project's single internal label order (docs/architecture.md, "Label order").

Readers map their dataset's own ids into this order; nothing downstream knows them.
"""

EXPRESSIONS: tuple[str, ...] = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
    "neutral",
    "contempt",
)
NUM_CLASSES = 7  # the basic seven; contempt (index 7) only where a dataset has it and asks for it
NEUTRAL = EXPRESSIONS.index("neutral")
INDEX = {name: i for i, name in enumerate(EXPRESSIONS)}


def class_names(num_classes: int = NUM_CLASSES) -> list[str]:
    """The expression names of the first ``num_classes`` classes; more classes than there are
    expressions (an identity target, ``fer_models.data.targets``) are numbered "0", "1", ..."""
    if num_classes > len(EXPRESSIONS):
        return [str(i) for i in range(num_classes)]
    return list(EXPRESSIONS[:num_classes])
