"""The program's own sitecustomize: conntrace's bootstrap must still run it."""

import os

os.environ["OWN_SITECUSTOMIZE"] = "ran"
