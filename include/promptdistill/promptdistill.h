// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
//! @file
//! Provided by promptdistill::promptdistill (the umbrella of every library).
//! Umbrella header: the whole public API (every header below include/promptdistill/ but the
//! detail/ folder) and nothing else. An engine that wants only the Selector includes
//! selector.h (and kv_cache.h) and links promptdistill::core with one backend.

// promptdistill::core
#include "promptdistill/blocks.h"
#include "promptdistill/dtype.h"
#include "promptdistill/kv_cache.h"
#include "promptdistill/selector.h"
#include "promptdistill/status.h"
#include "promptdistill/tensor_view.h"
#include "promptdistill/workspace.h"
// promptdistill::models
#include "promptdistill/gguf.h"
#include "promptdistill/model.h"
#include "promptdistill/npy.h"
#include "promptdistill/pipeline.h"
#include "promptdistill/safetensors.h"
#include "promptdistill/tokenizer.h"
// promptdistill::cpu_pipelines and promptdistill::cuda_pipelines
#include "promptdistill/batch_session.h"
#include "promptdistill/session_ref.h"
#include "promptdistill/transformer_ref.h"
