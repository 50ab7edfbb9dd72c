import apache_beam as beam
import transforms


def run(input_pcol, config):
    return (
        input_pcol
        | "Query" >> beam.ParDo(transforms.GutenTagKlio())
        | "Filter" >> beam.Map(transforms.filter_response)
        | "Use" >> beam.ParDo(transforms.PrivetKlio())
        | "Record" >> beam.Map(transforms.record_payload)
    )
