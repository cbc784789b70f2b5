"""ACME lab's neurofm plugins: a whisker-tracking modality encoder and a positioned-feature
stimulus encoder (local contrast energy)."""
