"""Language models: loading HF models, their layer layouts and hook points, activation capture, training
the zoo (base and fine-tunes), merges (SLERP, linear, mergekit configs) and the model catalog."""
