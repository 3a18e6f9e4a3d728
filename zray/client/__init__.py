"""The thin library users import (re-exported as `zray`)."""
