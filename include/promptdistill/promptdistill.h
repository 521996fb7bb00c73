// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Umbrella header: the public API and nothing else.

#include "promptdistill/dtype.h"
#include "promptdistill/kv_cache.h"
#include "promptdistill/npy.h"
#include "promptdistill/selector.h"
#include "promptdistill/status.h"
#include "promptdistill/tensor_view.h"
#include "promptdistill/workspace.h"
