"""Training: architectures (``models``), the loop (``fit``), recipes, budgets and tf.distribute strategies."""
