"""SageMaker script-mode entry points; each module is run as a script in the training or inference image."""
