#!/bin/sh
echo "coverage is unsupported in tandem's offline build (remote_coverage_tools is a stand-in)" >&2
exit 1
