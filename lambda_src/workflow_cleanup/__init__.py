"""Custom resource handler: on stack deletion, delete the SageMaker endpoint, configs and models the training
workflow created (they are made at run time, so CloudFormation does not know them)."""
