#pragma once
// Umbrella header: the whole public API of ramflow (target ramflow): the core (core.h), the jobs
// behind the command-line tool, the plots, the OCR reward, text rendering and the words task.
#include "ramflow/core.h"
#include "ramflow/html_report.h"
#include "ramflow/jobs.h"
#include "ramflow/labelled_grid.h"
#include "ramflow/launch.h"
#include "ramflow/ocr_reward.h"
#include "ramflow/plot.h"
#include "ramflow/text_render.h"
#include "ramflow/words_task.h"
