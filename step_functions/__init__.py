"""The training workflow as a Step Functions state machine (a CDK construct) built from the domain step list."""
