"""hotline-scanner: the command line, settings and the intake pipeline that ties the
scanner, matcher and store together."""
