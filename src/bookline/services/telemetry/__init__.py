"""telemetry: the local OTLP store of `bookline up`, its query API, viewer and tail sampling."""
