"""Built-in data importers (plugin kind ``sources``): experanto, sensorium, nwb."""
