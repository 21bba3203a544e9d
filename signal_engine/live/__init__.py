"""The live path: whole-book bundles stepped over the bars the collectors store."""
