"""Names of the self-knowledge tables and figures (cheap to import: read at parse time)."""

TABLES = (
    "self_knowledge_conditions",
    "self_knowledge_items",
    "self_knowledge_classes",
    "self_knowledge_tests",
)

FIGURES = ("self_knowledge_scatter", "self_knowledge_classes")
