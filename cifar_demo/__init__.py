"""cifar-demo: train, evaluate and explain CIFAR-10 classifiers."""

__version__ = "0.1.0"
