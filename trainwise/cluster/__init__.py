"""From one node to a cluster: job specs for Slurm, Kubeflow Trainer and Ray Train from one recipe
(`trainwise launch --emit`), and the shared-storage check for multi-node run directories."""
