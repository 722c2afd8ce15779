"""Training the built-in reader: the data mix, the training loop, weight interpolation.

Nothing here runs when a question is answered."""
