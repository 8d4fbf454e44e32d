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


def output_classes(num_classes: int = NUM_CLASSES, kept: "tuple[int, ...] | list[int] | None" = None) -> tuple[int, ...]:
    """The one rule for a network's outputs: output ``i`` is the project label ``kept[i]``.

    A dataset read with a class subset (FER2013's ``classes=happiness,sadness,neutral``,
    paper 004's NN1 with 3 outputs) keeps those labels, sorted in the project's order; every
    other dataset keeps the first ``num_classes`` (CK+'s ``classes=6``: anger .. surprise,
    labels unchanged). The cache keeps project labels and the name list (meta.json
    ``class_names``); the loader turns labels into output indices (``label``) and keeps the
    project's label beside them (``expression``) where the two differ."""
    if kept is None:
        return tuple(range(num_classes))
    return tuple(sorted({int(k) for k in kept}))


def output_names(classes: "tuple[int, ...] | list[int]") -> list[str]:
    """The names of ``output_classes``: the expressions' names."""
    return [EXPRESSIONS[k] for k in classes]


def classes_of_names(names: "list[str] | tuple[str, ...]") -> tuple[int, ...]:
    """Project labels of class names (the inverse of :func:`output_names`)."""
    return tuple(INDEX[str(n)] for n in names)


def neutral_output(names: "list[str] | tuple[str, ...]") -> int:
    """Output index of neutral among ``names``; -1 where the network has no neutral output."""
    return list(names).index("neutral") if "neutral" in names else -1
