// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The promptdistill authors.
#pragma once
#include "cli_args.h"

namespace pdcli {
//! `promptdistill generate`: one method, one prompt, greedy decoding; text or --json output.
int cmd_generate(const Args& a);
//! `promptdistill compare`: several methods on the same prompt, side by side.
int cmd_compare(const Args& a);
}  // namespace pdcli
