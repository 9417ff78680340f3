#pragma once
// Umbrella header: the whole public API of ramflow (target ramflow): the core (core.h), the jobs
// behind the command-line tool and the plots.
#include "ramflow/core.h"
#include "ramflow/jobs.h"
#include "ramflow/plot.h"
