"""CDK stacks of signal-engine; see stacks/README.md."""
