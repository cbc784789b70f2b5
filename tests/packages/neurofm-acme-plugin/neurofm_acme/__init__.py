"""ACME lab's neurofm plugins: a whisker-tracking modality encoder."""
