"""Networks: the expert bank, the discriminator and the evaluator classifier."""
